package compliance_test

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/phigate/phigate/compliance"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/store"
)

// reportWithStore is fixture.report with the store as the disposal
// backlog's source, as the gateway builds it.
func (f *fixture) reportWithStore(t *testing.T, cfg config.Config, now time.Time) *compliance.Report {
	t.Helper()
	tlsCfg, tlsErr := keys.LoadTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Server.Hostname, true,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	r, err := compliance.Build(ctx, compliance.Sources{Config: cfg, Users: f.g.Store, Trail: f.g.Trail,
		TLS: tlsCfg, TLSErr: tlsErr, GatewayKey: f.g.Keys.Gateway.Fingerprint(), Retention: f.g.Store, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mkAccount(t *testing.T, s store.Store, id, role, status string) *store.User {
	t.Helper()
	now := time.Now()
	u := &store.User{ID: id, EmailIndex: []byte("index-" + id), EmailEnc: []byte("sealed-" + id), Role: role, Status: status,
		KeyFpr: "fpr-" + id, PublicKey: []byte("pub-" + id), KeyWrap: store.KeyWrapMaster, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestRetentionChecks (issue 14.4): the audit retention setting, a message
// held past its disposal deadline (fails until the purge ran), the last
// purge with its counts, and how long backups keep disposed messages.
func TestRetentionChecks(t *testing.T) {
	f := open(t)
	now := time.Now()
	r := f.reportWithStore(t, f.cfg, now)
	want(t, r, "164.316(b)(2)(i)", "audit retention at least six years", compliance.Pass, "retention.audit 6y")
	want(t, r, "164.310(d)(2)(i)", "nothing held past its disposal deadline", compliance.Pass, "no message")
	want(t, r, "164.310(d)(2)(i)", "last purge", compliance.Info, "none recorded yet")
	want(t, r, "164.310(d)(2)(i)", "disposed messages survive in backups", compliance.Info, "up to 7d (backup.keep 7 × backup.interval 24h0m0s)")

	// Config.Validate refuses it at load; a report on such a config says so too.
	short := f.cfg
	short.Retention.Audit = config.Span{Duration: 5 * config.Year}
	want(t, f.reportWithStore(t, short, now), "164.316(b)(2)(i)", "audit retention", compliance.Fail, "retention.audit 5y")

	// A message three hours past its deadline, not disposed of: the purge
	// is not running (the check allows two purge intervals).
	sender := mkAccount(t, f.g.Store, "sender-1", store.RoleStaff, store.StatusActive)
	rcpt := mkAccount(t, f.g.Store, "rcpt-1", store.RolePatient, store.StatusActive)
	created := now.Add(-31 * 24 * time.Hour)
	m := store.Message{ID: "msg-1", RecipientID: rcpt.ID, SenderID: sender.ID, KeyFpr: rcpt.KeyFpr, CreatedAt: created,
		ExpiresAt: now.Add(-3 * time.Hour), Size: 10, Policy: "default", KeyPackets: []byte("k"), Body: []byte("b"),
		SummaryKeys: []byte("sk"), Summary: []byte("s")}
	if err := f.g.Store.Deliver(ctx, store.Delivery{Messages: []store.Message{m}}); err != nil {
		t.Fatal(err)
	}
	r = f.reportWithStore(t, f.cfg, now)
	want(t, r, "164.310(d)(2)(i)", "nothing held past its disposal deadline", compliance.Fail, "1 message past their deadline")
	if r.OK {
		t.Error("the report passed with a message held past its deadline")
	}

	// The purge runs: the check passes and the last run is shown.
	if n, err := f.g.PurgeOnce(ctx, now); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	r = f.reportWithStore(t, f.cfg, now.Add(time.Minute))
	want(t, r, "164.310(d)(2)(i)", "nothing held past its disposal deadline", compliance.Pass, "no message")
	want(t, r, "164.310(d)(2)(i)", "last purge", compliance.Info, "messages 1 expired, 0 recalled, 0 denied")
	want(t, r, "164.316(b)(2)(i)", "audit trail kept from its first entry", compliance.Info, "entry 1, ")
	if c := find(t, r, "164.310(d)(2)(i)", "last purge"); c.At == nil || c.At.Sub(now) > time.Minute || now.Sub(*c.At) > time.Minute {
		t.Errorf("last purge at %v, want about %v", c.At, now)
	}
}

// TestDrillCounts (issue 14.5): a backup.drill entry in the live trail
// (phigate backup drill) satisfies the restore-drill check; a failed one
// does not.
func TestDrillCounts(t *testing.T) {
	f := open(t)
	now := time.Now()
	f.record(t, "backup.drill", "phigate-backup-1.pgp", "failed", map[string]string{"taken": "2026-12-01T00:00:00Z"})
	want(t, f.report(t, f.cfg, now), "164.308(a)(7)", "last restore drill", compliance.Fail, "outcome failed")
	f.record(t, "backup.drill", "phigate-backup-2.pgp", "ok", map[string]string{"taken": "2026-12-02T00:00:00Z"})
	want(t, f.report(t, f.cfg, now), "164.308(a)(7)", "last restore drill", compliance.Pass, "backup phigate-backup-2.pgp taken 2026-12-02")
}
