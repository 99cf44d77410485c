package compliance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/compliance"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/store"
)

var ctx = context.Background()

// fixture is a gateway opened on a fresh dev data folder (real SQLite
// store and audit trail), not serving.
type fixture struct {
	g   *gateway.Gateway
	cfg config.Config
}

func open(t *testing.T) *fixture {
	t.Helper()
	cfg := e2e.Config(t.TempDir())
	cfg.Fill()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := gateway.Open(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Trail.Close(); g.Store.Close() })
	return &fixture{g: g, cfg: cfg}
}

// report builds a report of f's state with cfg at now.
func (f *fixture) report(t *testing.T, cfg config.Config, now time.Time) *compliance.Report {
	t.Helper()
	tlsCfg, tlsErr := keys.LoadTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Server.Hostname, true,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	r, err := compliance.Build(ctx, compliance.Sources{Config: cfg, Users: f.g.Store, Trail: f.g.Trail,
		TLS: tlsCfg, TLSErr: tlsErr, GatewayKey: f.g.Keys.Gateway.Fingerprint(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) record(t *testing.T, action, objID, outcome string, details map[string]string) {
	t.Helper()
	if err := f.g.Trail.Record(ctx, audit.Entry{Actor: "system", Action: action, ObjectType: "test",
		ObjectID: objID, Outcome: outcome, Details: details}); err != nil {
		t.Fatal(err)
	}
}

// find returns the check of rule whose name starts with name.
func find(t *testing.T, r *compliance.Report, rule, name string) compliance.Check {
	t.Helper()
	for _, s := range r.Safeguards {
		if s.Rule != rule {
			continue
		}
		for _, c := range s.Checks {
			if strings.HasPrefix(c.Name, name) {
				return c
			}
		}
	}
	t.Fatalf("no check %q under %s", name, rule)
	return compliance.Check{}
}

func want(t *testing.T, r *compliance.Report, rule, name string, st compliance.Status, detail string) {
	t.Helper()
	c := find(t, r, rule, name)
	if c.Status != st || !strings.Contains(c.Detail, detail) {
		t.Errorf("%s %q: %s %q, want %s containing %q", rule, c.Name, c.Status, c.Detail, st, detail)
	}
}

// production returns cfg with the settings a production gateway would
// have where the dev defaults differ (password cost, officer address).
func production(cfg config.Config) config.Config {
	cfg.Keys.PasswordMemoryKiB, cfg.Keys.PasswordTime = 64*1024, 3
	cfg.Security.OfficerEmail = "officer@clinic.example"
	cfg.Keys.EscrowPrivateKeyFile = ""
	return cfg
}

// TestFreshDataFolder: a fresh dev data folder fails exactly what it has
// not done or does not have: no audit verification, no backup, no restore
// drill, test-cheap password hashing; the rest passes.
func TestFreshDataFolder(t *testing.T) {
	f := open(t)
	now := time.Now()
	r := f.report(t, f.cfg, now)
	if r.OK {
		t.Fatal("a fresh data folder passed")
	}
	want(t, r, "164.312(b)", "last audit verification", compliance.Fail, "no audit verification recorded")
	want(t, r, "164.308(a)(7)", "last backup", compliance.Fail, "no backup recorded")
	want(t, r, "164.308(a)(7)", "last restore drill", compliance.Fail, "no restore recorded")
	want(t, r, "164.308(a)(1)(ii)(D)", "alerts have a recipient", compliance.Pass, "set") // --dev sets one
	want(t, r, "164.308(a)(5)(ii)(D)", "Argon2id", compliance.Fail, "KiB")
	want(t, r, "164.312(a)(2)(iii)", "idle timeout", compliance.Pass, "10m0s")
	want(t, r, "164.312(e)(1)", "TLS 1.2 or later only", compliance.Pass, "TLS 1.2")
	want(t, r, "164.312(e)(1)", "listener certificate", compliance.Pass, "self-signed")
	want(t, r, "164.312(a)(2)(iv)", "master key file owner-only", compliance.Pass, "mode 0600")
	want(t, r, "164.312(c)(1)", "gateway signing key", compliance.Pass, "fingerprint ")
	want(t, r, "164.312(d)", "staff, admin and security", compliance.Pass, "0 active without one")
	want(t, r, "164.312(a)(2)(i)", "accounts", compliance.Info, "0 accounts")
	failed := 0
	for _, s := range r.Safeguards {
		for _, c := range s.Checks {
			if c.Status == compliance.Fail {
				failed++
			}
		}
	}
	if r.Failed != failed || failed == 0 {
		t.Errorf("Failed = %d, counted %d", r.Failed, failed)
	}
	rules := map[string]bool{}
	for _, s := range r.Safeguards {
		rules[s.Rule] = true
		if s.Does == "" || len(s.Checks) == 0 {
			t.Errorf("%s: no description or no check", s.Rule)
		}
	}
	for _, rule := range []string{"164.312(a)(2)(i)", "164.312(a)(2)(ii)", "164.312(a)(2)(iii)", "164.312(a)(2)(iv)",
		"164.312(b)", "164.312(c)(1)", "164.312(d)", "164.312(e)(1)", "164.308(a)(1)(ii)(D)",
		"164.308(a)(5)(ii)(C)", "164.308(a)(5)(ii)(D)", "164.308(a)(7)"} {
		if !rules[rule] {
			t.Errorf("no safeguard %s", rule)
		}
	}
}

// TestAllPassThenStale: with a verification, a backup and a restore drill
// recorded, production settings and every staff account enrolled, every
// check passes; the same state three days later fails the verification and
// the backup (too old) but not the drill; a failed verification fails.
func TestAllPassThenStale(t *testing.T) {
	f := open(t)
	cfg := production(f.cfg)
	f.record(t, "audit.verify", "", audit.OK, map[string]string{"checked": "12"})
	f.record(t, "backup.create", "b-1", audit.OK, nil)
	f.record(t, "backup.restore", "b-1", audit.OK, map[string]string{"taken": "2026-12-01T00:00:00Z"})
	u, err := f.g.Identity.AddUser(ctx, "dr.lee@clinic.example", store.RoleStaff, "copper violin harbour 731")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.g.Identity.AddUser(ctx, "pat@example.net", store.RolePatient, "quiet meadow lantern 58"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Minute)
	r := f.report(t, cfg, now)
	want(t, r, "164.312(d)", "staff, admin and security", compliance.Fail, "1 active without one")
	want(t, r, "164.312(d)", "patients without a second factor", compliance.Info, "1 active patients")
	want(t, r, "164.312(a)(2)(i)", "accounts", compliance.Info, "2 accounts, 2 active (admin 0, security 0, staff 1, patient 1)")

	// Enrol the staff member's second factor.
	if err := f.g.Store.SetTOTP(ctx, u.ID, []byte("sealed secret stand-in"), 0, now); err != nil {
		t.Fatal(err)
	}
	r = f.report(t, cfg, now)
	if !r.OK {
		var b bytes.Buffer
		r.WriteText(&b)
		t.Fatalf("want every check to pass:\n%s", b.String())
	}
	want(t, r, "164.312(b)", "last audit verification", compliance.Pass, "entries checked: 12")
	if c := find(t, r, "164.308(a)(7)", "last backup"); c.At == nil || now.Sub(*c.At) > 2*time.Minute {
		t.Errorf("backup time %v", c.At)
	}

	// Requiring a second factor of patients makes the patient count fail.
	req := cfg
	req.Security.RequirePatient2FA = true
	want(t, f.report(t, req, now), "164.312(d)", "patients have a second factor", compliance.Fail, "1 active patients")

	later := now.Add(72 * time.Hour)
	r = f.report(t, cfg, later)
	want(t, r, "164.312(b)", "last audit verification", compliance.Fail, "72h")
	want(t, r, "164.308(a)(7)", "last backup", compliance.Fail, "backup b-1")
	want(t, r, "164.308(a)(7)", "last restore drill", compliance.Pass, "taken 2026-12-01")
	if r.OK || r.Failed != 2 {
		t.Errorf("three days later: OK %v, %d failed, want 2", r.OK, r.Failed)
	}

	f.record(t, "audit.verify", "7", audit.Failed, map[string]string{"reason": "mac mismatch"})
	want(t, f.report(t, cfg, now.Add(time.Minute)), "164.312(b)", "last audit verification", compliance.Fail, "outcome failed")
}

// TestSettingsChecked: each setting a check rules on fails when it is out
// of bounds.
func TestSettingsChecked(t *testing.T) {
	f := open(t)
	now := time.Now()
	cases := []struct {
		name        string
		edit        func(c *config.Config)
		rule, check string
		status      compliance.Status
		detail      string
	}{
		{"idle 20m", func(c *config.Config) { c.Session.IdleTimeout.Duration = 20 * time.Minute },
			"164.312(a)(2)(iii)", "idle timeout", compliance.Fail, "20m0s"},
		{"idle 15m", func(c *config.Config) { c.Session.IdleTimeout.Duration = 15 * time.Minute },
			"164.312(a)(2)(iii)", "idle timeout", compliance.Pass, "15m0s"},
		{"no officer", func(c *config.Config) { c.Security.OfficerEmail = "" },
			"164.308(a)(1)(ii)(D)", "alerts have a recipient", compliance.Fail, "not set"},
		{"no lock-out", func(c *config.Config) { c.Security.LockoutFailures = 0 },
			"164.308(a)(5)(ii)(C)", "lock-out", compliance.Fail, "0 failures"},
		{"lock-out 50", func(c *config.Config) { c.Security.LockoutFailures = 50 },
			"164.308(a)(5)(ii)(C)", "lock-out", compliance.Fail, "50 failures"},
		{"escrow private key", func(c *config.Config) { c.Keys.EscrowPrivateKeyFile = "/etc/phigate/escrow.asc" },
			"164.312(a)(2)(ii)", "no escrow private key", compliance.Fail, "set"},
		{"escrow public key missing", func(c *config.Config) { c.Keys.EscrowPublicKeyFile += ".gone" },
			"164.312(a)(2)(ii)", "escrow public key present", compliance.Fail, "missing"},
		{"redis plain remote", func(c *config.Config) { c.Redis.URL = "redis://:pw@10.0.0.5:6379/0" },
			"164.312(e)(1)", "Redis over TLS", compliance.Fail, "10.0.0.5"},
		{"redis tls", func(c *config.Config) { c.Redis.URL = "rediss://10.0.0.5:6379/0" },
			"164.312(e)(1)", "Redis over TLS", compliance.Pass, "rediss"},
		{"redis loopback", func(c *config.Config) { c.Redis.URL = "redis://127.0.0.1:6379/0" },
			"164.312(e)(1)", "Redis over TLS", compliance.Pass, "127.0.0.1"},
		{"no certificate", func(c *config.Config) { c.TLS.CertFile += ".gone" },
			"164.312(e)(1)", "listeners' TLS configuration loads", compliance.Fail, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := production(f.cfg)
			tc.edit(&cfg)
			r := f.report(t, cfg, now)
			want(t, r, tc.rule, tc.check, tc.status, tc.detail)
			for _, s := range r.Safeguards {
				if strings.Contains(s.Value, ":pw@") {
					t.Errorf("%s shows the Redis password: %s", s.Rule, s.Value)
				}
			}
		})
	}

	// A master key file others can read fails.
	if err := os.Chmod(f.cfg.Keys.MasterKeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, f.report(t, production(f.cfg), now), "164.312(a)(2)(iv)", "master key file owner-only", compliance.Fail, "mode 0644")
}

// TestOutput: the JSON output carries every safeguard and check (and
// reads back), and the text output has one line per check with its status.
func TestOutput(t *testing.T) {
	f := open(t)
	r := f.report(t, f.cfg, time.Now())
	var jb bytes.Buffer
	if err := r.WriteJSON(&jb); err != nil {
		t.Fatal(err)
	}
	var back compliance.Report
	if err := json.Unmarshal(jb.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.OK != r.OK || back.Failed != r.Failed || len(back.Safeguards) != len(r.Safeguards) ||
		back.Safeguards[2].Checks[0].Status != r.Safeguards[2].Checks[0].Status {
		t.Errorf("JSON does not read back: %s", jb.String())
	}
	var tb bytes.Buffer
	if err := r.WriteText(&tb); err != nil {
		t.Fatal(err)
	}
	text := tb.String()
	if !strings.Contains(text, "FAIL: ") || !strings.Contains(text, "164.312(a)(2)(iii) Automatic logoff") ||
		!strings.Contains(text, "  setting: session.idle_timeout, session.absolute_lifetime = 10m0s, 12h0m0s") {
		t.Errorf("text:\n%s", text)
	}
	checks := 0
	for _, s := range r.Safeguards {
		checks += len(s.Checks)
	}
	if n := strings.Count(text, "\n  [pass] ") + strings.Count(text, "\n  [fail] ") + strings.Count(text, "\n  [info] "); n != checks {
		t.Errorf("%d check lines, want %d:\n%s", n, checks, text)
	}
}
