package gateway_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/store"
)

func backupEntries(t *testing.T, h *e2e.Harness) []audit.Entry {
	t.Helper()
	es, err := h.G.Trail.Search(context.Background(), audit.Query{Action: "backup.create", Outcome: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// devEscrow unlocks the escrow key that --dev leaves in the data folder.
func devEscrow(t testing.TB, cfg config.Config) *pcrypto.Key {
	t.Helper()
	armored, err := os.ReadFile(gateway.DataPath(cfg, "escrow-private.asc"))
	if err != nil {
		t.Fatal(err)
	}
	pass, err := os.ReadFile(gateway.DataPath(cfg, "escrow-passphrase.txt"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := pcrypto.UnlockArmored(armored, []byte(strings.TrimSpace(string(pass))))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func restoreTargets(root string) backup.Targets {
	return backup.Targets{DB: filepath.Join(root, "phigate.db"), Files: map[string]string{"gateway-key.wrapped": filepath.Join(root, "gw")}}
}

// TestPeriodicBackup: serve takes a backup every backup.interval, audits
// each, keeps backup.keep of them, and each is encrypted to the escrow key
// and signed by the gateway key. On PostgreSQL it takes none and says so.
func TestPeriodicBackup(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Backup.Interval = config.Duration{Duration: 100 * time.Millisecond}
	cfg.Backup.Keep = 2
	cfg.Backup.Dir = filepath.Join(t.TempDir(), "backups")
	h := e2e.Start(t, cfg)
	if store.IsPostgresURL(h.Cfg.Store.URL) {
		if _, err := h.G.BackupOnce(context.Background(), ""); !errors.Is(err, gateway.ErrPostgresBackup) {
			t.Fatalf("backup on PostgreSQL: %v, want ErrPostgresBackup", err)
		}
		if !strings.Contains(h.Logs.String(), "periodic backups are off") {
			t.Error("no warning that periodic backups are off on PostgreSQL")
		}
		return
	}
	waitFor(t, "three periodic backups", func() bool { return len(backupEntries(t, h)) >= 3 })
	h.Stop()
	// The entries as committed, read again from the closed gateway's store.
	st, err := store.Open(context.Background(), h.Cfg.Store.URL, h.Cfg.Database.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mac, enc := h.G.Keys.AuditKeys()
	trail, err := audit.New(audit.Options{Store: st, MACKey: mac, EncKey: enc})
	if err != nil {
		t.Fatal(err)
	}
	defer trail.Close()
	es, err := trail.Search(context.Background(), audit.Query{Action: "backup.create", Outcome: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := backup.List(cfg.Backup.Dir, h.G.Keys.Gateway.Public())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("%d backups kept, want backup.keep = 2", len(ls))
	}
	last := es[0] // newest first
	for _, e := range es {
		if e.Time.After(last.Time) {
			last = e
		}
	}
	if last.Actor != "system" || ls[1].ID != last.ObjectID {
		t.Errorf("newest backup %s, last backup.create entry %+v", ls[1].ID, last)
	}
	for _, l := range ls {
		if l.Err != nil {
			t.Errorf("%s does not verify: %v", l.Name, l.Err)
		}
	}
	r, err := backup.Restore(ls[1].Path, devEscrow(t, h.Cfg), nil, restoreTargets(t.TempDir()))
	if err != nil || r.RecipientFPR != h.G.Keys.Escrow.Fingerprint() {
		t.Fatalf("restore with the escrow key: %v (recipient %s)", err, r.RecipientFPR)
	}
}

// TestBackupRecipientKey: with backup.recipient_key set, backups are
// encrypted to that key and not to the escrow key.
func TestBackupRecipientKey(t *testing.T) {
	bk, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "backup", Email: "backup@clinic.example"})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bk.PublicArmored()
	if err != nil {
		t.Fatal(err)
	}
	cfg := e2e.Config(t.TempDir())
	cfg.Backup.Interval = config.Duration{}
	cfg.Backup.RecipientKey = filepath.Join(t.TempDir(), "backup-public.asc")
	if err := os.WriteFile(cfg.Backup.RecipientKey, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	h := e2e.Start(t, cfg)
	if store.IsPostgresURL(h.Cfg.Store.URL) {
		t.Skip("backups cover SQLite only; TestPeriodicBackup checks the refusal")
	}
	info, err := h.G.BackupOnce(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if info.RecipientFPR != bk.Fingerprint() {
		t.Errorf("encrypted to %s, want the backup key %s", info.RecipientFPR, bk.Fingerprint())
	}
	if _, err := backup.Restore(info.Path, devEscrow(t, h.Cfg), nil, restoreTargets(t.TempDir())); err == nil {
		t.Error("the escrow key opened a backup encrypted to backup.recipient_key")
	}
	if _, err := backup.Restore(info.Path, bk, nil, restoreTargets(t.TempDir())); err != nil {
		t.Errorf("restore with the backup key: %v", err)
	}
}
