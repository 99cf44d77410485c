package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/quota"
)

// senderLimits gives the intake the per-account sending limits of
// [smtp.senders] (issue 8.5, 8.6): counted in Redis when redis.url is set
// (every node sees the same counts), in this process otherwise; the stored
// bytes come from the store. It runs after shared().
func (g *Gateway) senderLimits(ctx context.Context) error {
	sc := g.Cfg.SMTP.Senders
	qc := quota.Config{MessagesPerHour: sc.MessagesPerHour, Concurrent: sc.ConcurrentTxns,
		// A transaction's slot outlives its longest possible DATA.
		Lease: 2*g.Cfg.SMTP.ReadTimeout.Duration + g.Cfg.SMTP.WriteTimeout.Duration}
	if g.Redis != nil {
		g.Intake.Quota = quota.NewRedis(g.Redis, g.Cfg.Redis.Prefix+"quota:", qc, nil)
	} else {
		g.Intake.Quota = quota.NewMemory(qc, nil)
	}
	g.Intake.Stored = g.Store
	g.Intake.Limits = intake.Limits{MaxTransactionBytes: sc.MaxTransactionBytes, MaxStoredBytes: sc.MaxStoredBytes,
		CommitBatchBytes: sc.CommitBatchBytes, AllowFrom: intake.NewAllowFrom(sc.AllowFrom)}
	return g.recordAllowFrom(ctx, sc.AllowFrom)
}

// recordAllowFrom puts the header From allow list in force into the trail
// at every start: the object id is a digest of the list, so a change shows
// as a new digest without decrypting; the details (encrypted) hold it.
func (g *Gateway) recordAllowFrom(ctx context.Context, m map[string][]string) error {
	var lines []string
	details := map[string]string{}
	for acct, addrs := range m {
		norm := make([]string, 0, len(addrs))
		for _, a := range addrs {
			norm = append(norm, keys.NormalizeAddr(a))
		}
		slices.Sort(norm)
		k := keys.NormalizeAddr(acct)
		details[k] = strings.Join(norm, ",")
		lines = append(lines, k+"="+details[k])
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return g.Trail.Record(ctx, audit.Entry{Actor: "system", Action: "sender.allow_from", ObjectType: "config",
		ObjectID: hex.EncodeToString(sum[:8]), Outcome: "ok", Details: details})
}
