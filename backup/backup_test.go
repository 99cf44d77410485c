package backup

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

type fixture struct {
	dir, dbPath string
	st          *store.SQL
	gw, escrow  *pcrypto.Key
	files       map[string]string
}

func newKey(t *testing.T, name string) *pcrypto.Key {
	t.Helper()
	k, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: name, Email: name + "@clinic.example"})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newFixture is a real SQLite store with a user row and two state files.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, dbPath: filepath.Join(dir, "data", "phigate.db"), gw: newKey(t, "gateway"), escrow: newKey(t, "escrow")}
	st, err := store.OpenSQLite(context.Background(), f.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.st = st
	if err := st.CreateUser(context.Background(), &store.User{ID: "u1", EmailIndex: []byte("idx-1"), EmailEnc: []byte("sealed"), PublicKey: []byte("pub"), KeyFpr: "fpr", KeyWrap: "master", Role: store.RoleStaff,
		Status: store.StatusActive, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	f.files = map[string]string{"gateway-key.wrapped": filepath.Join(dir, "data", "gateway-key.wrapped"),
		"audit-checkpoints.jsonl": filepath.Join(dir, "data", "audit-checkpoints.jsonl")}
	for name, p := range f.files {
		if err := os.WriteFile(p, []byte("contents of "+name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) create(t *testing.T) Info {
	t.Helper()
	info, err := Create(context.Background(), filepath.Join(f.dir, "backups"), Source{DB: f.st.DB(), Files: f.files,
		ConfigDigest: "digest-1", Signer: f.gw, Recipient: f.escrow.Public()})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return info
}

func (f *fixture) targets(root string) Targets {
	return Targets{DB: filepath.Join(root, "phigate.db"), Files: map[string]string{
		"gateway-key.wrapped": filepath.Join(root, "gateway-key.wrapped"), "audit-checkpoints.jsonl": filepath.Join(root, "audit-checkpoints.jsonl")}}
}

func TestCreateVerifyRestore(t *testing.T) {
	f := newFixture(t)
	info := f.create(t)
	if st, err := os.Stat(info.Path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v", err, st.Mode())
	}
	// No temporary folder (with its database snapshot) is left behind.
	ents, _ := os.ReadDir(filepath.Dir(info.Path))
	if len(ents) != 1 {
		t.Errorf("backup dir holds %d entries, want just the backup", len(ents))
	}
	raw, _ := os.ReadFile(info.Path)
	if bytes.Contains(raw, []byte("contents of")) || bytes.Contains(raw, []byte("idx-1")) {
		t.Fatal("backup file holds state in the clear")
	}
	m, err := Verify(info.Path, f.gw.Public())
	if err != nil || m.ID != info.ID {
		t.Fatalf("verify: %v (id %q want %q)", err, m.ID, info.ID)
	}
	if _, err := Verify(info.Path, newKey(t, "other")); !errors.Is(err, ErrInvalid) {
		t.Errorf("verify against another gateway key: %v, want ErrInvalid", err)
	}
	// Only the recipient's private key reads it.
	if _, err := Restore(info.Path, f.gw, nil, f.targets(filepath.Join(f.dir, "wrongkey"))); err == nil {
		t.Error("restore with a key that is not the recipient succeeded")
	}
	root := filepath.Join(f.dir, "restored")
	r, err := Restore(info.Path, f.escrow, f.gw.Public(), f.targets(root))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if r.ID != info.ID || r.ConfigDigest != "digest-1" || len(r.Files) != 2 {
		t.Errorf("restored %+v", r)
	}
	for name := range f.files {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || string(b) != "contents of "+name {
			t.Errorf("%s restored as %q (%v)", name, b, err)
		}
	}
	st2, err := store.OpenSQLite(context.Background(), filepath.Join(root, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if u, err := st2.UserByID(context.Background(), "u1"); err != nil || string(u.EmailIndex) != "idx-1" {
		t.Errorf("restored user: %+v, %v", u, err)
	}
	// Over existing state: refused, nothing touched.
	if _, err := Restore(info.Path, f.escrow, nil, f.targets(root)); !errors.Is(err, ErrNotEmpty) {
		t.Errorf("restore over a restored store: %v, want ErrNotEmpty", err)
	}
}

func TestTamperedBackupRefused(t *testing.T) {
	f := newFixture(t)
	info := f.create(t)
	raw, err := os.ReadFile(info.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		at   func([]byte) int
	}{
		{"payload key packet", func(b []byte) int { return bytes.Index(b, []byte(memberPayload)) + 512 + 30 }},
		{"payload middle", func(b []byte) int { return bytes.Index(b, []byte(memberPayload)) + 512 + int(info.PayloadSize/2) }},
		{"manifest byte", func(b []byte) int { return bytes.Index(b, []byte(`"created"`)) + 14 }},
		{"signature byte", func(b []byte) int { return bytes.Index(b, []byte("manifest.sig")) + 512 + 20 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := append([]byte(nil), raw...)
			bad[c.at(bad)] ^= 0x01
			p := filepath.Join(t.TempDir(), "bad"+Ext)
			if err := os.WriteFile(p, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(p, nil); !errors.Is(err, ErrInvalid) {
				t.Errorf("verify: %v, want ErrInvalid", err)
			}
			root := filepath.Join(t.TempDir(), "r")
			if _, err := Restore(p, f.escrow, nil, f.targets(root)); err == nil {
				t.Error("restore of a tampered backup succeeded")
			}
			if _, err := os.Stat(filepath.Join(root, "phigate.db")); err == nil {
				t.Error("a tampered backup's database was put in place")
			}
		})
	}
	// A truncated file too.
	p := filepath.Join(t.TempDir(), "short"+Ext)
	os.WriteFile(p, raw[:len(raw)/2], 0o600)
	if _, err := Verify(p, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("verify truncated: %v, want ErrInvalid", err)
	}
}

// TestStaleTempScrubbed: a temporary folder a crashed backup left behind
// (with its database snapshot) goes at the next backup; a fresh one, which
// may be another backup under way, stays.
func TestStaleTempScrubbed(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.dir, "backups")
	old, fresh := filepath.Join(dir, ".tmp-crashed"), filepath.Join(dir, ".tmp-running")
	for _, d := range []string{old, fresh} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "snapshot.db"), []byte("snapshot"), 0o600)
	}
	long := time.Now().Add(-2 * staleTemp)
	os.Chtimes(old, long, long)
	f.create(t)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temporary folder still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "snapshot.db")); err != nil {
		t.Errorf("a recent temporary folder was removed: %v", err)
	}
}

func TestListAndPrune(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.dir, "backups")
	var made []Info
	for i := 0; i < 3; i++ {
		base := time.Date(2026, 12, 1+i, 3, 0, 0, 0, time.UTC)
		info, err := Create(context.Background(), dir, Source{DB: f.st.DB(), Files: f.files, Signer: f.gw,
			Recipient: f.escrow.Public(), Now: func() time.Time { return base }})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, info)
	}
	os.WriteFile(filepath.Join(dir, "phigate-20261231T000000Z-junk"+Ext), []byte("not a backup"), 0o600)
	ls, err := List(dir, f.gw.Public())
	if err != nil || len(ls) != 4 {
		t.Fatalf("list: %d, %v", len(ls), err)
	}
	for i, l := range ls[:3] {
		if l.Err != nil || l.ID != made[i].ID || !l.Created.Equal(made[i].Created) || l.Size != made[i].Size {
			t.Errorf("list[%d] = %+v, want %s", i, l, made[i].ID)
		}
	}
	if ls[3].Err == nil {
		t.Error("junk file listed as verified")
	}
	if ls, err := List(filepath.Join(f.dir, "none yet"), nil); err != nil || len(ls) != 0 {
		t.Errorf("list of a missing folder: %v, %v; want empty", ls, err)
	}
	removed, err := Prune(dir, 2)
	if err != nil || len(removed) != 2 || !strings.Contains(removed[0], made[0].ID) || !strings.Contains(removed[1], made[1].ID) {
		t.Fatalf("prune removed %v (%v), want the two oldest", removed, err)
	}
	if ls, _ := List(dir, nil); len(ls) != 2 || ls[0].ID != made[2].ID {
		t.Errorf("after prune: %+v", ls)
	}
}
