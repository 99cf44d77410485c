package gateway_test

import (
	"context"
	"errors"
	"io"
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
	"github.com/phigate/phigate/internal/pgtest"
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

// freshTargets is an empty database of h's kind (a new SQLite file, or a
// new PostgreSQL database) to restore into.
func freshTargets(t testing.TB, h *e2e.Harness) backup.Targets {
	t.Helper()
	root := t.TempDir()
	tg := backup.Targets{Files: map[string]string{"gateway-key.wrapped": filepath.Join(root, "gw")}, Temp: root}
	if !store.IsPostgresURL(h.Cfg.Store.URL) {
		tg.DB = filepath.Join(root, "phigate.db")
		return tg
	}
	st, err := store.OpenPostgres(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tg.Load = func(r io.Reader) error { _, err := st.Load(context.Background(), r); return err }
	tg.Empty = func() (bool, error) { return st.Empty(context.Background()) }
	return tg
}

// TestPeriodicBackup: serve takes a backup every backup.interval, audits
// each, keeps backup.keep of them, and each is encrypted to the escrow key
// and signed by the gateway key. On both backends (PHIGATE_TEST_STORE).
func TestPeriodicBackup(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Backup.Interval = config.Duration{Duration: 100 * time.Millisecond}
	cfg.Backup.Keep = 2
	cfg.Backup.Dir = filepath.Join(t.TempDir(), "backups")
	h := e2e.Start(t, cfg)
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
	r, err := backup.Restore(ls[1].Path, devEscrow(t, h.Cfg), nil, freshTargets(t, h))
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
	cfg.Backup.Keep = 1
	cfg.Backup.RecipientKey = filepath.Join(t.TempDir(), "backup-public.asc")
	if err := os.WriteFile(cfg.Backup.RecipientKey, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	h := e2e.Start(t, cfg)
	// A folder named for one backup (phigate backup create --out, an
	// archive) is never pruned, whatever backup.keep says.
	out := t.TempDir()
	var info backup.Info
	for i := 0; i < 2; i++ {
		var err error
		if info, err = h.G.BackupOnce(context.Background(), out); err != nil {
			t.Fatal(err)
		}
	}
	if ls, err := backup.List(out, nil); err != nil || len(ls) != 2 {
		t.Errorf("--out folder holds %d backups (%v), want both with backup.keep = 1", len(ls), err)
	}
	if info.RecipientFPR != bk.Fingerprint() {
		t.Errorf("encrypted to %s, want the backup key %s", info.RecipientFPR, bk.Fingerprint())
	}
	if _, err := backup.Restore(info.Path, devEscrow(t, h.Cfg), nil, freshTargets(t, h)); err == nil {
		t.Error("the escrow key opened a backup encrypted to backup.recipient_key")
	}
	if _, err := backup.Restore(info.Path, bk, nil, freshTargets(t, h)); err != nil {
		t.Errorf("restore with the backup key: %v", err)
	}
}

// TestRestoreDrill is the restore drill on the gateway's own backend (run
// on PostgreSQL too with PHIGATE_TEST_STORE=postgres): send over SMTP,
// claim, back up while serving, restore into an empty data folder and a
// fresh database with only the master key, sign in with the password and
// read the message, the chain verifies and holds backup.restore. A restore
// over the original store is refused. (The SQLite drill against the real
// binary, with the refusals, is cmd/phigate TestBackupRestoreDrill.)
func TestRestoreDrill(t *testing.T) {
	ctx := context.Background()
	cfg := e2e.Config(t.TempDir())
	cfg.Backup.Interval = config.Duration{}
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	text := "Dear patient,\r\nyour results survive a restore.\r\n"
	msg := e2e.Multipart(staff, "Dr Lee", "pat.drill@example.net", "Drill", text, "<p>drill</p>", "r.bin", []byte("attachment"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"pat.drill@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	const pw = "copper kettle morning rain"
	h.Client().JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": pw}, 200, nil)
	info, err := h.G.BackupOnce(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	escrow := devEscrow(t, h.Cfg)
	h.Stop()

	over, closeOver, err := gateway.RestoreTargets(ctx, h.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(info.Path, escrow, nil, over); !errors.Is(err, backup.ErrNotEmpty) {
		t.Errorf("restore over the original store: %v, want ErrNotEmpty", err)
	}
	closeOver()

	cfg2 := e2e.Config(t.TempDir())
	cfg2.Backup.Interval = config.Duration{}
	if store.IsPostgresURL(h.Cfg.Store.URL) {
		cfg2.Store.URL = pgtest.URL(t)
	}
	master, err := os.ReadFile(h.Cfg.Keys.MasterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg2.Keys.MasterKeyFile, master, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2.Fill()
	targets, closeStore, err := gateway.RestoreTargets(ctx, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := backup.Restore(info.Path, escrow, nil, targets)
	closeStore()
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if _, err := gateway.AuditRestore(ctx, cfg2, r, "cli:drill", h.G.Log); err != nil {
		t.Fatalf("opening the restored gateway: %v", err)
	}

	h2 := e2e.Start(t, cfg2)
	c := h2.Client()
	c.JSON("POST", "/api/v1/login", map[string]string{"email": "pat.drill@example.net", "password": pw}, 200, nil)
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 1 {
		t.Fatalf("inbox after the restore: %+v", list)
	}
	var m msgJSON
	c.JSON("GET", "/api/v1/messages/"+list.Messages[0].ID, nil, 200, &m)
	if m.Text != text || m.Signature != "verified" {
		t.Errorf("restored message: text %q signature %q, want %q verified", m.Text, m.Signature, text)
	}
	if _, err := h2.G.Trail.Verify(ctx); err != nil {
		t.Errorf("audit verify after the restore: %v", err)
	}
	es, err := h2.G.Trail.Search(ctx, audit.Query{Action: "backup.restore"})
	if err != nil || len(es) != 1 || es[0].ObjectID != info.ID || es[0].Actor != "cli:drill" {
		t.Errorf("backup.restore entries %+v (%v), want one naming %s", es, err, info.ID)
	}
}
