package gateway

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/store"
)

// maxPurgeRuns bounds the runs one purge tick makes while batches come
// back full (invariant 7): 200 runs of purge_batch rows, then the next tick.
const maxPurgeRuns = 200

// RetainOnce runs one bounded purge (issue 14.4): the ciphertext of
// recalled, denied and due messages, unclaimed accounts with their pending
// keys, spent links and stale push subscriptions. What it disposed of is
// audited in the purge's own transaction: message.purge per message,
// account.dispose per account, and one retention.purge entry with the
// counts. A run that disposed of nothing writes nothing.
func (g *Gateway) RetainOnce(ctx context.Context, now time.Time) (store.PurgeResult, error) {
	rc := g.Cfg.Retention
	plan := store.PurgePlan{Now: now, PushStaleFor: rc.PushStale.Duration, Batch: rc.PurgeBatch}
	if g.Policy != nil {
		if doc, _ := g.Policy.Current(); doc != nil {
			plan.UnclaimedFor = doc.UnclaimedFor()
		}
	}
	// The trail itself when the gateway was opened but not started (an
	// admin command): nothing is disposed of without its entries.
	rec := g.Audit
	if rec == nil && g.Trail != nil {
		rec = g.Trail
	}
	if rec == nil {
		return store.PurgeResult{}, errors.New("purge: no audit trail to record it")
	}
	var batch *audit.Batch
	r, err := g.Store.Purge(ctx, plan, func(r store.PurgeResult) store.AuditFunc {
		var err error
		if batch, err = audit.Prepare(ctx, rec, retentionEntries(r, plan)...); err != nil {
			return func(int64, []byte) ([]store.AuditRecord, error) { return nil, err }
		}
		return batch.Func()
	})
	if err != nil || r.Empty() {
		return r, err
	}
	err = batch.Committed(ctx)
	g.publishPurged(ctx, append(append(append([]string{}, r.Expired...), r.Recalled...), r.Denied...))
	return r, err
}

// retentionEntries are the audit entries of one purge run. No PHI: ids
// and counts only.
func retentionEntries(r store.PurgeResult, p store.PurgePlan) []audit.Entry {
	var es []audit.Entry
	for _, g := range []struct {
		why string
		ids []string
	}{{"retention", r.Expired}, {"recalled", r.Recalled}, {"denied", r.Denied}} {
		for _, id := range g.ids {
			es = append(es, audit.Entry{Actor: "system", Action: "message.purge", ObjectType: "message", ObjectID: id,
				Outcome: audit.OK, Details: map[string]string{"why": g.why}})
		}
	}
	for _, id := range r.Accounts {
		es = append(es, audit.Entry{Actor: "system", Action: "account.dispose", ObjectType: "user", ObjectID: id,
			Outcome: audit.OK, Details: map[string]string{"why": "unclaimed", "unclaimed_for": p.UnclaimedFor.String()}})
	}
	n := strconv.Itoa
	return append(es, audit.Entry{Actor: "system", Action: "retention.purge", ObjectType: "retention", Outcome: audit.OK,
		Details: map[string]string{
			"messages_expired": n(len(r.Expired)), "messages_recalled": n(len(r.Recalled)), "messages_denied": n(len(r.Denied)), "copies": n(r.Copies),
			"accounts_unclaimed": n(len(r.Accounts)), "pending_keys": n(r.PendingKeys), "links": n(r.Tokens),
			"push_subscriptions": n(r.PushSubscriptions), "more": strconv.FormatBool(r.More),
		}})
}

// PurgeOnce disposes of everything due at now, run after run while the
// batches come back full (at most maxPurgeRuns), and returns how many
// messages lost their ciphertext.
func (g *Gateway) PurgeOnce(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for range maxPurgeRuns {
		r, err := g.RetainOnce(ctx, now)
		total += r.Messages()
		if err != nil || !r.More {
			return total, err
		}
	}
	return total, nil
}

// purgeInterval is retention.purge_interval (an hour if unset).
func (g *Gateway) purgeInterval() time.Duration {
	if iv := g.Cfg.Retention.PurgeInterval.Duration; iv > 0 {
		return iv
	}
	return time.Hour
}
