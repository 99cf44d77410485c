package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/pgtest"
)

// openPostgres opens a store on a new database of its own (dropped when t
// ends, after the store is closed).
func openPostgres(t *testing.T) *SQL {
	t.Helper()
	url := pgtest.URL(t)
	s, err := OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestPostgres runs the backend-independent suite on PostgreSQL.
func TestPostgres(t *testing.T) {
	runSuite(t, func(t *testing.T) Store { return openPostgres(t) })
}

// TestPostgresAuditAppendOnly: the database itself refuses to change or
// remove audit rows, whoever asks (phigate's own connection included).
func TestPostgresAuditAppendOnly(t *testing.T) {
	ctx := context.Background()
	s := openPostgres(t)
	c := &chained{action: "auth.login", ids: []string{"a", "b"}}
	if err := s.AppendAudit(ctx, c.fn); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`UPDATE audit_log SET outcome = 'denied' WHERE seq = 1`,
		`DELETE FROM audit_log WHERE seq = 2`,
		`TRUNCATE audit_log`,
		`INSERT INTO audit_log (seq, at, actor, ip, action, object_type, object_id, outcome, cid, details_enc, mac)
			VALUES (1, 0, '', '', 'x', '', '', '', '', '', '\x00') ON CONFLICT (seq) DO UPDATE SET action = 'x'`,
	} {
		_, err := s.DB().ExecContext(ctx, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want the append-only refusal", strings.Fields(stmt)[0], err)
		}
	}
	if n := checkChain(t, s); n != 2 {
		t.Errorf("%d entries after the refused changes, want 2", n)
	}
}

// TestPostgresSynchronousCommit: every pooled connection commits
// synchronously even where the database's default says otherwise, so a
// 250 (sent after COMMIT returned) means the rows are on disk.
func TestPostgresSynchronousCommit(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	first, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := first.DB().QueryRowContext(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := first.DB().ExecContext(ctx, `ALTER DATABASE `+db+` SET synchronous_commit = off`); err != nil {
		t.Fatal(err)
	}
	first.Close()
	s := closing(t, mustOpenPostgres(t, url))
	for i := 0; i < 3; i++ { // hold three at once so they are distinct
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var v string
		if err := c.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != "on" {
			t.Errorf("conn %d: synchronous_commit = %s, want on", i, v)
		}
	}
}

func mustOpenPostgres(t *testing.T, url string) *SQL {
	t.Helper()
	s, err := OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	return s
}

// TestPostgresMigrationsMirrorSQLite: both dialect folders hold the same
// versions, and a fresh PostgreSQL database has them all applied.
func TestPostgresMigrationsMirrorSQLite(t *testing.T) {
	names := func(fsys embed.FS, dir string) []string {
		ents, err := fs.ReadDir(fsys, dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	lite, pg := names(sqliteMigrations, "migrations/sqlite"), names(postgresMigrations, "migrations/postgres")
	if fmt.Sprint(lite) != fmt.Sprint(pg) {
		t.Errorf("migrations differ:\nsqlite:   %v\npostgres: %v", lite, pg)
	}
	if got := appliedMigrations(t, openPostgres(t)); got != len(pg) {
		t.Errorf("%d migrations applied, want %d", got, len(pg))
	}
}

// TestPostgresTwoNodes: two nodes on one database deliver and audit at
// once; every delivery commits once and the audit chain has no gap or
// fork (the chain head is taken in turns, conflicts run again).
func TestPostgresTwoNodes(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	nodes := []*SQL{closing(t, mustOpenPostgres(t, url)), closing(t, mustOpenPostgres(t, url))}
	sender := mkUser(t, nodes[0], RoleStaff, StatusActive)
	const workers, each = 4, 8
	rcpts := make([]*User, workers)
	for i := range rcpts {
		rcpts[i] = mkUser(t, nodes[0], RolePatient, StatusActive)
	}
	var wg sync.WaitGroup
	for n, s := range nodes {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					// Every message goes to two recipients, in an order that
					// differs between workers: row locks taken in opposite
					// orders (a deadlock PostgreSQL breaks) must be retried.
					a, b := rcpts[w], rcpts[(w+1)%workers]
					if (i+n)%2 == 1 {
						a, b = b, a
					}
					m1, m2 := mkMsg(a, sender, t0), mkMsg(b, sender, t0)
					c := &chained{action: "message.accept", ids: []string{m1.ID, m2.ID}}
					if err := s.Deliver(ctx, Delivery{Messages: []Message{m1, m2}, Audit: c.fn}); err != nil {
						t.Errorf("node %d: Deliver: %v", n, err)
					}
					l := &chained{action: "auth.login", ids: []string{fmt.Sprint("login-", n, "-", w, "-", i)}}
					if err := s.AppendAudit(ctx, l.fn); err != nil && !errors.Is(err, ErrConflict) {
						t.Errorf("node %d: AppendAudit: %v", n, err)
					}
				}
			}()
		}
	}
	wg.Wait()
	total := 0
	for _, r := range rcpts {
		list, err := nodes[1].ListMessages(ctx, r.ID, t0)
		if err != nil {
			t.Fatal(err)
		}
		total += len(list)
	}
	if want := len(nodes) * workers * each * 2; total != want {
		t.Errorf("%d messages stored, want %d", total, want)
	}
	accepts, err := nodes[0].ListAudit(ctx, AuditFilter{Action: "message.accept", Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if len(accepts) != total {
		t.Errorf("%d message.accept entries for %d messages", len(accepts), total)
	}
	checkChain(t, nodes[1])
}

// TestPostgresLeaseSkipsLocked: a node leasing notices passes over rows
// another node's lease transaction holds instead of waiting for it (SELECT
// ... FOR UPDATE SKIP LOCKED). lock_timeout turns a wait into an error
// rather than a hang.
func TestPostgresLeaseSkipsLocked(t *testing.T) {
	ctx := context.Background()
	dbURL, err := neturl.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := dbURL.Query()
	q.Set("lock_timeout", "5000") // pgx passes unknown parameters to the server
	dbURL.RawQuery = q.Encode()
	s := closing(t, mustOpenPostgres(t, dbURL.String()))
	u := mkUser(t, s, RolePatient, StatusPending)
	var items []OutboxItem
	for i := 0; i < 6; i++ {
		items = append(items, mkOutbox(u.ID, "", t0.Add(time.Duration(i)*time.Millisecond)))
	}
	deliver(t, s, Delivery{Outbox: items})
	// The other node, mid-lease: the three oldest rows locked, not committed.
	other, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	held, err := other.QueryContext(ctx, `SELECT id FROM outbox ORDER BY next_attempt_at LIMIT 3 FOR UPDATE`)
	if err != nil {
		t.Fatal(err)
	}
	for held.Next() {
	}
	held.Close()
	got, err := s.LeaseOutbox(ctx, t0.Add(time.Second), t0.Add(time.Hour), 64)
	if err != nil {
		t.Fatalf("LeaseOutbox beside a lease in progress: %v", err)
	}
	sameIDs(t, "leased beside the held rows", outboxIDs(got), outboxIDs(items[3:]))
}

// TestPostgresAppRole: the grants docs/deploy.md gives the nodes' role are
// enough to run phigate (migrations already current, deliveries, audit,
// leases, purge), and that role cannot touch audit rows even with the
// triggers out of the way: the privilege is missing.
func TestPostgresAppRole(t *testing.T) {
	ctx := context.Background()
	role := "phigate_app_" + strings.ToLower(uid("r")[2:])
	role = strings.ReplaceAll(role, "-", "_")
	// Registered before the database exists, so it runs after it is
	// dropped: a role with grants in a database cannot be dropped.
	var maintURL string
	t.Cleanup(func() {
		if maintURL == "" {
			return
		}
		db, err := sql.Open("pgx", maintURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, `DROP ROLE IF EXISTS `+role); err != nil {
			t.Errorf("DROP ROLE: %v", err)
		}
	})
	srv := pgtest.Start(t)
	maintURL = srv.AdminURL()
	ownerURL := srv.NewDB(t)
	closing(t, mustOpenPostgres(t, ownerURL)) // migrates, as the owner
	admin, err := sql.Open("pgx", ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, stmt := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`GRANT USAGE ON SCHEMA public TO ` + role,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ` + role,
		`REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM ` + role,
		`REVOKE INSERT, UPDATE, DELETE ON goose_db_version FROM ` + role,
	} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	appURL, err := neturl.Parse(ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	appURL.User = neturl.User(role)
	s := closing(t, mustOpenPostgres(t, appURL.String()))

	sender, rcpt := mkUser(t, s, RoleStaff, StatusActive), mkUser(t, s, RolePatient, StatusPending)
	m := mkMsg(rcpt, sender, t0)
	c := &chained{action: "message.accept", ids: []string{m.ID}}
	deliver(t, s, Delivery{Messages: []Message{m}, Outbox: []OutboxItem{mkOutbox(rcpt.ID, m.ID, t0)}, Audit: c.fn})
	leased, err := s.LeaseOutbox(ctx, t0.Add(time.Second), t0.Add(time.Hour), 10)
	if err != nil || len(leased) != 1 {
		t.Fatalf("LeaseOutbox: %d, %v", len(leased), err)
	}
	if err := s.OutboxSent(ctx, t0, leased[0].ID); err != nil {
		t.Fatal(err)
	}
	r := &chained{action: "message.recall", ids: []string{m.ID}}
	if err := s.Recall(ctx, m.ID, sender.ID, r.fn); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeCiphertext(ctx, t0.Add(time.Minute), nil); err != nil || n != 1 {
		t.Fatalf("PurgeCiphertext: %d, %v", n, err)
	}
	if n := checkChain(t, s); n != 2 {
		t.Errorf("%d audit entries, want 2", n)
	}
	// With the triggers dropped (by the owner), the role still cannot.
	for _, stmt := range []string{`DROP TRIGGER audit_log_no_update ON audit_log`, `DROP TRIGGER audit_log_no_delete ON audit_log`} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{`UPDATE audit_log SET outcome = 'x'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`} {
		if _, err := s.DB().ExecContext(ctx, stmt); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s as the app role: %v, want permission denied", stmt, err)
		}
	}
}
