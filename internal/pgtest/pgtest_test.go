package pgtest

import (
	"context"
	"database/sql"
	"testing"
)

// TestPrivateServer: with no server to use, a private one starts, gives a
// database of its own that takes writes, and stops with the test.
func TestPrivateServer(t *testing.T) {
	s := startPrivate(t)
	u := s.NewDB(t)
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	var v, name string
	if err := db.QueryRowContext(ctx, `SELECT v, current_database() FROM t`).Scan(&v, &name); err != nil {
		t.Fatal(err)
	}
	if v != "x" || len(name) < len("phigate_test_") || name[:len("phigate_test_")] != "phigate_test_" {
		t.Errorf("read %q from database %q", v, name)
	}
}

// TestURLsAreSeparate: two databases of one test do not see each other.
func TestURLsAreSeparate(t *testing.T) {
	a, b := URL(t), URL(t)
	if a == b {
		t.Fatalf("the same database twice: %s", a)
	}
	ctx := context.Background()
	da, err := sql.Open("pgx", a)
	if err != nil {
		t.Fatal(err)
	}
	defer da.Close()
	if _, err := da.ExecContext(ctx, `CREATE TABLE only_in_a (v INT)`); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", b)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `SELECT * FROM only_in_a`); err == nil {
		t.Error("a table of one database is visible in the other")
	}
}
