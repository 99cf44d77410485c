package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"reflect"

	"modernc.org/sqlite"
)

// sqliteCached is the SQLite driver with a per-connection statement cache.
// modernc.org/sqlite compiles every query string afresh (sqlite3_prepare)
// on each ExecContext/QueryContext; in a CPU profile of SMTP intake that
// parsing was about an eighth of the gateway's CPU (docs/perf.md, "Where a
// message's time goes"). The store's queries are a fixed set of strings, so
// each connection keeps its compiled statements and only binds and steps
// them. Results are the same: a statement is reset and its bindings cleared
// after every use (the driver does this for its own prepared statements),
// and SQLite re-prepares it by itself if the schema changes.
const sqliteCached = "sqlite-phigate-stmtcache"

// sqliteMaxIdle is how many idle connections the pool keeps (each with
// its page cache and its statements).
const sqliteMaxIdle = 16

// stmtCacheMax bounds the statements one connection keeps: the store's
// queries are a few dozen constant strings, but some are built with a
// variable number of placeholders. When full, the cache is emptied.
const stmtCacheMax = 256

func init() {
	sql.Register(sqliteCached, cachingDriver{&sqlite.Driver{}})
}

type cachingDriver struct{ d driver.Driver }

func (c cachingDriver) Open(name string) (driver.Conn, error) {
	cn, err := c.d.Open(name)
	if err != nil {
		return nil, err
	}
	return newCachingConn(cn), nil
}

// The interfaces database/sql uses on a modernc connection.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type cachedStmt struct {
	s interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	}
	// busy: rows of this statement are open; another use of the same
	// query meanwhile runs uncached (it would reset those rows).
	busy bool
}

// cachingConn is used by one goroutine at a time (database/sql holds the
// connection's lock for every call, rows included), so the map needs no
// lock of its own.
type cachingConn struct {
	sqliteConn
	stmts map[string]*cachedStmt
}

func newCachingConn(cn driver.Conn) driver.Conn {
	sc, ok := cn.(sqliteConn)
	if !ok {
		// Not the driver this was written for: no cache.
		return cn
	}
	return &cachingConn{sqliteConn: sc, stmts: map[string]*cachedStmt{}}
}

// stmt returns query's cached statement, preparing it on first use; nil
// (and no error) when it cannot be cached.
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if st := c.stmts[query]; st != nil {
		return st, nil
	}
	ds, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s, ok := ds.(interface {
		driver.Stmt
		driver.StmtExecContext
		driver.StmtQueryContext
	})
	if !ok {
		ds.Close()
		return nil, nil
	}
	if len(c.stmts) >= stmtCacheMax {
		c.dropIdle()
	}
	st := &cachedStmt{s: s}
	c.stmts[query] = st
	return st, nil
}

// dropIdle finalizes every cached statement that has no open rows.
func (c *cachingConn) dropIdle() {
	for q, st := range c.stmts {
		if !st.busy {
			st.s.Close()
			delete(c.stmts, q)
		}
	}
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil || st.busy {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return st.s.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil || st.busy {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := st.s.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	st.busy = true
	return &cachedRows{Rows: rows, st: st}, nil
}

func (c *cachingConn) Close() error {
	for q, st := range c.stmts {
		st.s.Close()
		delete(c.stmts, q)
	}
	return c.sqliteConn.Close()
}

// cachedRows gives its statement back when closed (the driver resets it).
type cachedRows struct {
	driver.Rows
	st *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.st.busy = false
	return err
}

// The column type methods database/sql's ColumnTypes uses, passed through.

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
