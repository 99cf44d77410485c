package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/phigate/phigate/internal/pgtest"
)

// forEachBackend runs fn once on SQLite and once on PostgreSQL (issue
// 11.2). node opens a handle on that run's database: the first call
// creates the database, each later one is another "node" on the same data
// (a second process on the SQLite file, a second server client on
// PostgreSQL). Handles close when the subtest ends.
func forEachBackend(t *testing.T, fn func(t *testing.T, node func() *SQL)) {
	t.Run("SQLite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "phigate.db")
		fn(t, func() *SQL { return closing(t, openSQLiteAt(t, path)) })
	})
	t.Run("Postgres", func(t *testing.T) {
		url := pgtest.URL(t)
		fn(t, func() *SQL {
			s, err := OpenPostgres(context.Background(), url)
			if err != nil {
				t.Fatalf("OpenPostgres: %v", err)
			}
			return closing(t, s)
		})
	})
}

func closing(t *testing.T, s *SQL) *SQL {
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}
