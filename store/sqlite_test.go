package store

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func openSQLiteAt(t *testing.T, path string) *SQL {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatalf("OpenSQLite(%s): %v", path, err)
	}
	return s
}

func TestSQLite(t *testing.T) {
	runSuite(t, func(t *testing.T) Store {
		s := openSQLiteAt(t, filepath.Join(t.TempDir(), "phigate.db"))
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}

// The queries use PostgreSQL-style $N placeholders, and Claim uses $1
// twice. SQLite treats $1 as a named parameter; check that modernc binds
// each $N to the Nth argument, reused or out of order.
func TestSQLiteReusedPlaceholder(t *testing.T) {
	ctx := context.Background()
	s := openSQLiteAt(t, filepath.Join(t.TempDir(), "p.db"))
	defer s.Close()

	var got string
	if err := s.DB().QueryRowContext(ctx, `SELECT $1 || '|' || $2 || '|' || $1`, "a", "b").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "a|b|a" {
		t.Errorf("reused $1: got %q, want a|b|a", got)
	}
	if err := s.DB().QueryRowContext(ctx, `SELECT $2 || '|' || $1 || '|' || $3`, "a", "b", "c").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "b|a|c" {
		t.Errorf("out-of-order $N: got %q, want b|a|c", got)
	}

	// Claim's exact shape: $1 is the new value and the expiry bound.
	conn, err := s.DB().Conn(ctx) // temp tables live on one connection
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{
		`CREATE TEMP TABLE tk (h TEXT, u TEXT, exp INTEGER NOT NULL, used INTEGER)`,
		`INSERT INTO tk VALUES ('live', 'u1', 100, NULL), ('dead', 'u1', 50, NULL)`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	const upd = `UPDATE tk SET used = $1 WHERE h = $2 AND u = $3 AND used IS NULL AND exp > $1`
	for _, tc := range []struct {
		h    string
		want int64
	}{{"live", 1}, {"dead", 0}, {"live", 0}} {
		res, err := conn.ExecContext(ctx, upd, int64(75), tc.h, "u1")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != tc.want {
			t.Errorf("UPDATE %s: %d rows, want %d", tc.h, n, tc.want)
		}
	}
	var used int64
	if err := conn.QueryRowContext(ctx, `SELECT used FROM tk WHERE h = $1`, "live").Scan(&used); err != nil {
		t.Fatal(err)
	}
	if used != 75 {
		t.Errorf("used = %d, want 75", used)
	}
}

// Every pooled connection gets the durability and locking settings.
func TestSQLiteSettings(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "phigate.db")
	s := openSQLiteAt(t, path)
	defer s.Close()

	for i := 0; i < 3; i++ { // hold three at once so they are distinct
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var mode string
		var sync, fk, busy int
		if err := c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy); err != nil {
			t.Fatal(err)
		}
		var ckpt int
		if err := c.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&ckpt); err != nil {
			t.Fatal(err)
		}
		if ckpt != walCheckpointPages {
			t.Errorf("conn %d: wal_autocheckpoint=%d, want %d", i, ckpt, walCheckpointPages)
		}
		if strings.ToLower(mode) != "wal" || sync != 2 || fk != 1 || busy < 1000 {
			t.Errorf("conn %d: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d; want wal/2(FULL)/1/>=1000",
				i, mode, sync, fk, busy)
		}
	}

	// Owner-only files: key material and ciphertext live here.
	u := mkUser(t, s, RolePatient, StatusPending)
	deliver(t, s, Delivery{ClaimTokens: []ClaimToken{mkToken(u, t0, time.Hour)}})
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("data dir mode: %v %v", st.Mode(), err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s mode %v, want owner-only", filepath.Base(f), st.Mode().Perm())
		}
	}
}

func migrationCount(t *testing.T) int {
	t.Helper()
	ents, err := fs.ReadDir(sqliteMigrations, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".sql") {
			n++
		}
	}
	return n
}

func appliedMigrations(t *testing.T, s *SQL) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow(`SELECT COUNT(*) FROM goose_db_version WHERE version_id > 0 AND is_applied`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// crashFixture is what the durability tests commit and then look for.
type crashFixture struct {
	sender, rcpt *User
	msg          Message
	tok          ClaimToken
	ob           OutboxItem
}

func newCrashFixture(t testing.TB) crashFixture {
	f := crashFixture{
		sender: newUser(t, "durable-sender", RoleStaff, StatusActive),
		rcpt:   newUser(t, "durable-rcpt", RolePatient, StatusPending),
	}
	f.msg = newMsg("durable-msg", f.rcpt, f.sender, t0)
	f.tok = ClaimToken{Hash: hash("durable-token"), UserID: f.rcpt.ID, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	f.ob = OutboxItem{ID: "durable-ob", Kind: "portal-notice", UserID: f.rcpt.ID, MessageID: f.msg.ID,
		Payload: []byte("sealed-payload"), CreatedAt: t0, NextAttemptAt: t0}
	return f
}

func (f crashFixture) write(t testing.TB, s Store) {
	ctx := context.Background()
	for _, u := range []*User{f.sender, f.rcpt} {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Deliver(ctx, Delivery{Messages: []Message{f.msg}, ClaimTokens: []ClaimToken{f.tok},
		Outbox: []OutboxItem{f.ob}}); err != nil {
		t.Fatal(err)
	}
}

func (f crashFixture) check(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	got, err := s.UserByID(ctx, f.rcpt.ID)
	if err != nil {
		t.Fatalf("user lost: %v", err)
	}
	if got.ID != f.rcpt.ID || got.KeyFpr != f.rcpt.KeyFpr || !got.CreatedAt.Equal(f.rcpt.CreatedAt) {
		t.Errorf("user = %+v", got)
	}
	m, err := s.GetMessage(ctx, f.msg.ID)
	if err != nil {
		t.Fatalf("message lost: %v", err)
	}
	eqMsg(t, *m, f.msg, true)
	if _, err := s.ClaimTokenByHash(ctx, f.tok.Hash); err != nil {
		t.Errorf("claim token lost: %v", err)
	}
	due, err := s.DueOutbox(ctx, t0, 10)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "outbox", outboxIDs(due), []string{f.ob.ID})
}

func TestSQLiteReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "phigate.db")
	want := migrationCount(t)
	if want == 0 {
		t.Fatal("no embedded migrations")
	}
	f := newCrashFixture(t)

	s := openSQLiteAt(t, path)
	if n := appliedMigrations(t, s); n != want {
		t.Errorf("first open: %d migrations applied, want %d", n, want)
	}
	f.write(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < 2; i++ {
		s = openSQLiteAt(t, path)
		f.check(t, s)
		if n := appliedMigrations(t, s); n != want {
			t.Errorf("reopen %d: %d migrations recorded, want %d (migrations re-ran?)", i, n, want)
		}
		// Still writable after reopening.
		u := mkUser(t, s, RolePatient, StatusPending)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openSQLiteAt(t, path)
		if _, err := s.UserByID(context.Background(), u.ID); err != nil {
			t.Errorf("user written after reopen %d lost: %v", i, err)
		}
		s.Close()
	}
}

const crashEnv = "PHIGATE_STORE_TEST_CRASH_DB"

// TestSQLiteKill9Helper is the child of TestSQLiteKill9: it commits a
// delivery, reports it, and dies by SIGKILL without closing anything.
func TestSQLiteKill9Helper(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestSQLiteKill9")
	}
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	newCrashFixture(t).write(t, s)
	os.Stdout.WriteString("COMMITTED\n")
	p, _ := os.FindProcess(os.Getpid())
	p.Kill()
	time.Sleep(time.Minute)
}

// A 250 is answered after Deliver returns: what Deliver committed must
// survive the process being killed right after.
func TestSQLiteKill9(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip()
	}
	path := filepath.Join(t.TempDir(), "phigate.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteKill9Helper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.CombinedOutput()
	if !bytes.Contains(out, []byte("COMMITTED")) {
		t.Fatalf("helper did not commit: %v\n%s", err, out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("helper was not killed: %v\n%s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Logf("no WAL left after kill: %v", err)
	}
	s := openSQLiteAt(t, path)
	defer s.Close()
	newCrashFixture(t).check(t, s)
}

// No plaintext PHI at rest: the store only ever sees a blind index and a
// sealed copy of an address, and the schema has no column that could hold
// one in the clear.
func TestSQLiteNoPlaintext(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "phigate.db")
	s := openSQLiteAt(t, path)

	const canary = "Canary.Patient.7f3a9@clinic-example.org"
	key := randBytes(t, 32)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(strings.ToLower(canary)))
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := randBytes(t, aead.NonceSize())
	sealed := aead.Seal(append([]byte{}, nonce...), nonce, []byte(canary), nil)

	u := newUser(t, uid("user"), RolePatient, StatusPending)
	u.EmailIndex = mac.Sum(nil)
	u.EmailEnc = sealed
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := s.UserByEmailIndex(ctx, u.EmailIndex)
	if err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "EmailEnc", got.EmailEnc, sealed)

	scan := func(when string) {
		var all []byte
		for _, f := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		// Positive control: the sealed bytes are in the files we scan.
		if !bytes.Contains(all, sealed) {
			t.Fatalf("%s: sealed address not found in db+wal: scanning the wrong files?", when)
		}
		low := bytes.ToLower(all)
		for _, needle := range []string{canary, "canary.patient", "clinic-example.org"} {
			if bytes.Contains(low, bytes.ToLower([]byte(needle))) {
				t.Errorf("%s: plaintext %q found in the database files", when, needle)
			}
		}
	}
	scan("open")

	// Schema: no column that reads like an address, subject or name,
	// beyond the blind index, the sealed copy and an app password's label.
	allowed := map[string]bool{"users.email_index": true, "users.email_enc": true, "app_passwords.name": true,
		"recipient_keys.email_index": true} // a keyed hash, like users.email_index
	suspect := regexp.MustCompile(`(?i)mail|subject|name|addr|phone|birth|ssn|mrn|diagnos|display|recipient_email|header`)
	rows, err := s.DB().QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{}
	for rows.Next() {
		var name, sqlText string
		if err := rows.Scan(&name, &sqlText); err != nil {
			t.Fatal(err)
		}
		tables[name] = sqlText
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, want := range []string{"users", "app_passwords", "messages", "claim_tokens", "outbox"} {
		if _, ok := tables[want]; !ok {
			t.Errorf("table %s missing from schema", want)
		}
	}
	ncols := 0
	for table, sqlText := range tables {
		crows, err := s.DB().QueryContext(ctx, `SELECT name FROM pragma_table_info($1)`, table)
		if err != nil {
			t.Fatal(err)
		}
		for crows.Next() {
			var col string
			if err := crows.Scan(&col); err != nil {
				t.Fatal(err)
			}
			ncols++
			if !strings.Contains(sqlText, col) {
				t.Errorf("%s.%s not in its CREATE statement %q", table, col, sqlText)
			}
			if suspect.MatchString(col) && !allowed[table+"."+col] {
				t.Errorf("column %s.%s looks like it could hold plaintext PHI", table, col)
			}
		}
		crows.Close()
	}
	if ncols < 30 {
		t.Errorf("only %d columns inspected: schema query broken?", ncols)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	scan("after close")
}

// TestSQLiteOneWriter: every write of this process (single statements,
// transactions, group-committed deliveries) goes through one connection
// with the larger page cache. PRAGMA data_version on a connection changes
// only when another connection has committed, which is also when SQLite
// drops that connection's page cache: it must not change on the writer.
func TestSQLiteOneWriter(t *testing.T) {
	ctx := context.Background()
	s := openSQLiteAt(t, filepath.Join(t.TempDir(), "phigate.db"))
	defer s.Close()
	onWriter := func(q string) (n int64) {
		t.Helper()
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if s.wconn == nil {
			t.Fatal("no writing connection after a write")
		}
		if err := s.wconn.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	staff := mkUser(t, s, RoleStaff, StatusActive)
	if got := onWriter(`PRAGMA cache_size`); got != -writerCacheKiB {
		t.Errorf("writer cache_size = %d, want %d", got, -writerCacheKiB)
	}
	before := onWriter(`PRAGMA data_version`)
	for i := 0; i < 5; i++ {
		rcpt := mkUser(t, s, RolePatient, StatusPending) // exec
		deliver(t, s, Delivery{Messages: []Message{mkMsg(rcpt, staff, t0)}, ClaimTokens: []ClaimToken{mkToken(rcpt, t0, time.Hour)}})
		if err := s.AppendAudit(ctx, func(seq int64, _ []byte) ([]AuditRecord, error) { // tx
			return []AuditRecord{{Seq: seq + 1, At: t0, Actor: "a", Action: "x", MAC: []byte{1}}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if after := onWriter(`PRAGMA data_version`); after != before {
		t.Errorf("data_version on the writer went %d -> %d: another connection wrote", before, after)
	}
	// Readers on other connections see every write.
	var users, msgs, entries int
	if err := s.DB().QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM messages),
		(SELECT COUNT(*) FROM audit_log)`).Scan(&users, &msgs, &entries); err != nil {
		t.Fatal(err)
	}
	if users != 6 || msgs != 5 || entries != 5 {
		t.Errorf("users, messages, entries = %d, %d, %d; want 6, 5, 5", users, msgs, entries)
	}
}

// TestSQLiteBackgroundCheckpoint: checkpointLoop copies committed pages
// into the database file soon after a write, far below the writer's own
// automatic checkpoint (walBackstopPages).
func TestSQLiteBackgroundCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "phigate.db")
	s := openSQLiteAt(t, path)
	defer s.Close()
	size := func() int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	staff := mkUser(t, s, RoleStaff, StatusActive)
	rcpt := mkUser(t, s, RolePatient, StatusPending)
	time.Sleep(2 * checkpointEvery) // the users are checkpointed
	before := size()
	for i := 0; i < 10; i++ {
		m := mkMsg(rcpt, staff, t0)
		m.Body = bytes.Repeat([]byte{byte(i)}, 64<<10)
		deliver(t, s, Delivery{Messages: []Message{m}})
	}
	// 640 KiB: about 160 pages, not 16,000.
	for deadline := time.Now().Add(10 * time.Second); size() < before+600<<10; {
		if time.Now().After(deadline) {
			t.Fatalf("database file %d -> %d bytes: the WAL was not checkpointed", before, size())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Migration 00020 copies the messages table with the ciphertext last:
// every row keeps every column, and the copies, which dropping the old
// table cascades away, are put back.
func TestSQLiteBodyLastMigrationKeepsRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	old, err := openSQLite(ctx, path, 19)
	if err != nil {
		t.Fatal(err)
	}
	sender, rcpt := mkUser(t, old, RoleStaff, StatusActive), mkUser(t, old, RolePatient, StatusActive)
	held, plain := mkMsg(rcpt, sender, t0), mkMsg(rcpt, sender, t0.Add(time.Second))
	held.State, held.Body = StateQuarantined, randBytes(t, 20<<10) // overflow pages
	plain.State, plain.PasscodeHash = StateDelivered, randBytes(t, 32)
	copies := []MessageCopy{mkCopy(held.ID, CopySender, 2), mkCopy(held.ID, CopyReview, 2), mkCopy(plain.ID, CopySender, 0)}
	deliver(t, old, Delivery{Messages: []Message{held, plain}, Copies: copies})
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	s := openSQLiteAt(t, path)
	defer s.Close()
	for _, want := range []Message{held, plain} {
		got, err := s.GetMessage(ctx, want.ID)
		if err != nil {
			t.Fatalf("message %s after the migration: %v", want.ID, err)
		}
		if !bytes.Equal(got.Body, want.Body) || !bytes.Equal(got.KeyPackets, want.KeyPackets) ||
			!bytes.Equal(got.Summary, want.Summary) || !bytes.Equal(got.SummaryKeys, want.SummaryKeys) ||
			!bytes.Equal(got.PasscodeHash, want.PasscodeHash) || got.State != want.State ||
			got.SenderID != want.SenderID || got.RecipientID != want.RecipientID || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("message %s changed in the migration", want.ID)
		}
	}
	for _, kind := range []string{CopySender, CopyReview} {
		got, err := s.MessageCopies(ctx, kind, held.ID, plain.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range copies {
			if g, ok := got[c.MessageID]; c.Kind == kind && (!ok || !bytes.Equal(g.Data, c.Data) || g.Attachments != c.Attachments) {
				t.Errorf("copy %s/%s lost or changed in the migration: %+v", c.MessageID, kind, g)
			}
		}
	}
	var last string
	if err := s.DB().QueryRowContext(ctx, `SELECT name FROM pragma_table_info('messages') ORDER BY cid DESC LIMIT 1`).Scan(&last); err != nil || last != "body" {
		t.Errorf("last column of messages: %q, %v; want body", last, err)
	}
	var fk int
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_foreign_key_check`).Scan(&fk); err != nil || fk != 0 {
		t.Errorf("foreign key check: %d rows, %v", fk, err)
	}
}
