package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// dbFiles is every byte of the database, its WAL and shared memory.
func dbFiles(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	for _, f := range []string{"w.db", "w.db-wal", "w.db-shm"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestSQLiteWipesDeletedKeyMaterial (issue 8.7): what a purge empties and
// what a password reset replaces is gone from the database files, not just
// unreferenced (secure_delete, then the WAL truncated). The claim case is
// identity's TestClaimLeavesNoPendingKey, with real keys.
func TestSQLiteWipesDeletedKeyMaterial(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSQLiteAt(t, filepath.Join(dir, "w.db"))
	defer s.Close()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	rcpt := newUser(t, uid("user"), RolePatient, StatusActive)
	rcpt.PrivateKeyWrapped = randBytes(t, 400)
	if err := s.CreateUser(ctx, rcpt); err != nil {
		t.Fatal(err)
	}
	m := mkMsg(rcpt, sender, t0)
	m.Body, m.KeyPackets = randBytes(t, 20<<10), randBytes(t, 600) // the body spills to overflow pages
	deliver(t, s, Delivery{Messages: []Message{m}})
	oldKey := rcpt.PrivateKeyWrapped
	for what, b := range map[string][]byte{"body": m.Body, "key packets": m.KeyPackets, "wrapped key": oldKey} {
		// Every probe of the search below is found before, unless it
		// straddles the end of a page (a row's local part and its first
		// overflow page are not adjacent in the file): most must be.
		before, found := dbFiles(t, dir), 0
		for at := 0; at+32 <= len(b); at += len(b) / 8 {
			if bytes.Contains(before, b[at:at+32]) {
				found++
			}
		}
		if found < 6 {
			t.Fatalf("%s: %d of its probes in the files before: the search would prove nothing", what, found)
		}
	}

	if err := s.Recall(ctx, m.ID, sender.ID, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeCiphertext(ctx, t0.Add(time.Minute), nil); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	tok := mkToken(rcpt, t0, time.Hour)
	tok.Kind = TokenReset
	if err := s.AddToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(ctx, Reset{UserID: rcpt.ID, TokenHash: tok.Hash, NewKeyFpr: "new", PublicKey: []byte("pub"),
		PrivateKeyWrapped: randBytes(t, len(oldKey)+40), PwParams: "p", PwSalt: []byte("s"), PwVerifier: []byte("v"),
		At: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	after := dbFiles(t, dir)
	for what, b := range map[string][]byte{"purged body": m.Body, "purged key packets": m.KeyPackets, "replaced wrapped key": oldKey} {
		for at := 0; at+32 <= len(b); at += len(b) / 8 {
			if bytes.Contains(after, b[at:at+32]) {
				t.Errorf("%s (bytes %d..%d) still in the database files", what, at, at+32)
				break
			}
		}
	}
}
