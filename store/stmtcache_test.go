package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// cachedConn opens a store and pins one of its connections, with a scratch
// table t(k, v) holding k = 1..5, v = "v<k>".
func cachedConn(t *testing.T) (*SQL, *sql.Conn) {
	t.Helper()
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 5; k++ {
		if _, err := c.ExecContext(ctx, `INSERT INTO t (k, v) VALUES ($1, $2)`, k, fmt.Sprint("v", k)); err != nil {
			t.Fatal(err)
		}
	}
	return s, c
}

func cacheLen(t *testing.T, c *sql.Conn) int {
	t.Helper()
	n := -1
	if err := c.Raw(func(dc any) error {
		cc, ok := dc.(*cachingConn)
		if !ok {
			return fmt.Errorf("connection is %T, not the caching one", dc)
		}
		n = len(cc.stmts)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStmtCacheReusesWithNewArguments(t *testing.T) {
	ctx := context.Background()
	_, c := cachedConn(t)
	before := cacheLen(t, c)
	const q = `SELECT v FROM t WHERE k = $1`
	for k := 1; k <= 5; k++ {
		var v string
		if err := c.QueryRowContext(ctx, q, k).Scan(&v); err != nil || v != fmt.Sprint("v", k) {
			t.Fatalf("k=%d: %q, %v", k, v, err)
		}
	}
	// No row: the statement is reset, and the next use still works.
	if err := c.QueryRowContext(ctx, q, 99).Scan(new(string)); err != sql.ErrNoRows {
		t.Fatalf("missing row: %v", err)
	}
	var v string
	if err := c.QueryRowContext(ctx, q, 2).Scan(&v); err != nil || v != "v2" {
		t.Fatalf("after no row: %q, %v", v, err)
	}
	// Writes through a cached statement, in and out of a transaction.
	for i := 0; i < 3; i++ {
		if _, err := c.ExecContext(ctx, `UPDATE t SET v = $1 WHERE k = $2`, fmt.Sprint("w", i), 3); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE t SET v = $1 WHERE k = $2`, "rolled back", 3); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRowContext(ctx, q, 3).Scan(&v); err != nil || v != "w2" {
		t.Fatalf("after updates: %q, %v", v, err)
	}
	if got := cacheLen(t, c) - before; got != 2 {
		t.Errorf("%d statements added to the cache for 2 query strings", got)
	}
}

// The same query while its own rows are still open runs uncached and
// leaves the outer rows intact.
func TestStmtCacheNestedSameQuery(t *testing.T) {
	ctx := context.Background()
	_, c := cachedConn(t)
	const q = `SELECT k, v FROM t WHERE k >= $1 ORDER BY k`
	rows, err := c.QueryContext(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	var outer []int
	for rows.Next() {
		var k int
		var v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		outer = append(outer, k)
		if k == 2 {
			inner, err := c.QueryContext(ctx, q, 4)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for inner.Next() {
				var ik int
				var iv string
				if err := inner.Scan(&ik, &iv); err != nil {
					t.Fatal(err)
				}
				got = append(got, ik)
			}
			inner.Close()
			if fmt.Sprint(got) != "[4 5]" {
				t.Errorf("inner query: %v", got)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if fmt.Sprint(outer) != "[1 2 3 4 5]" {
		t.Errorf("outer rows: %v", outer)
	}
	// And the cached statement serves again afterwards.
	var n int
	if err := c.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE k >= $1`, 2).Scan(&n); err != nil || n != 4 {
		t.Fatalf("count: %d, %v", n, err)
	}
}

func TestStmtCacheBounded(t *testing.T) {
	ctx := context.Background()
	_, c := cachedConn(t)
	for i := 0; i < stmtCacheMax*2; i++ {
		var n int
		if err := c.QueryRowContext(ctx, fmt.Sprintf(`SELECT %d + k FROM t WHERE k = $1`, i), 1).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("query %d: %d, %v", i, n, err)
		}
	}
	if n := cacheLen(t, c); n > stmtCacheMax {
		t.Errorf("%d cached statements, more than %d", n, stmtCacheMax)
	}
}

// A cached statement follows a schema change made on another connection.
func TestStmtCacheSchemaChange(t *testing.T) {
	ctx := context.Background()
	s, c := cachedConn(t)
	const q = `SELECT * FROM t WHERE k = $1`
	cols := func() int {
		rows, err := c.QueryContext(ctx, q, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		names, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		return len(names)
	}
	if n := cols(); n != 2 {
		t.Fatalf("%d columns", n)
	}
	other, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, `ALTER TABLE t ADD COLUMN w TEXT`); err != nil {
		t.Fatal(err)
	}
	if n := cols(); n != 3 {
		t.Errorf("after ALTER TABLE on another connection: %d columns, want 3", n)
	}
}
