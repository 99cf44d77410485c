package e2e

import (
	"context"
	"database/sql"
	"os"
	"sync"
	"testing"

	"github.com/phigate/phigate/internal/pgtest"
)

// EnvStore picks the store the harness's gateways use: "postgres" puts
// each data directory's gateway on a PostgreSQL database of its own
// (internal/pgtest); unset, the embedded SQLite file. CI runs the
// end-to-end, audit, policy, canary and multi-node tests once each way.
const EnvStore = "PHIGATE_TEST_STORE"

// pgByDir maps a data directory to its database, so a gateway restarted on
// the same directory (or a second node given it) finds the same data, as
// with the SQLite file in it.
var pgByDir sync.Map

// storeURL returns the store.url for a gateway on dir under EnvStore.
func storeURL(t testing.TB, dir string) string {
	if os.Getenv(EnvStore) != "postgres" {
		return ""
	}
	if u, ok := pgByDir.Load(dir); ok {
		return u.(string)
	}
	u := pgtest.URL(t)
	pgByDir.Store(dir, u)
	t.Cleanup(func() { pgByDir.Delete(dir) })
	return u
}

// StoreBytes returns every byte the gateway's database holds, raw, for
// tests that look for plaintext that must not be there: the database file
// and its WAL on SQLite; on PostgreSQL every value of every column of
// every table (a byte search over the server's files would miss nothing
// more, and they may be on another machine). It works after Stop too.
func (h *Harness) StoreBytes() []byte {
	h.T.Helper()
	if h.Cfg.Store.URL == "" {
		var out []byte
		for _, f := range []string{h.Cfg.Database.DSN, h.Cfg.Database.DSN + "-wal"} {
			b, _ := os.ReadFile(f)
			out = append(out, b...)
		}
		return out
	}
	db, err := sql.Open("pgx", h.Cfg.Store.URL)
	if err != nil {
		h.T.Fatal(err)
	}
	defer db.Close()
	out, err := dumpTables(context.Background(), db)
	if err != nil {
		h.T.Fatalf("e2e: reading the database: %v", err)
	}
	return out
}

func dumpTables(ctx context.Context, db *sql.DB) ([]byte, error) {
	rows, err := db.QueryContext(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
	if err != nil {
		return nil, err
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, n)
	}
	rows.Close()
	var out []byte
	for _, tbl := range tables {
		b, err := dumpTable(ctx, db, tbl)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

func dumpTable(ctx context.Context, db *sql.DB, table string) ([]byte, error) {
	rows, err := db.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []byte
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for _, v := range vals {
			out = append(append(out, v...), 0)
		}
	}
	return out, rows.Err()
}
