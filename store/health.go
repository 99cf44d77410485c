package store

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// MigrationsCurrent reports an error unless the database's schema version
// (goose's record) is the newest migration this binary embeds: a node
// whose binary is older or newer than the schema must not take work
// (gateway readiness, issue 11.5). It takes no lock, so it does not wait
// behind a node that is migrating.
func (s *SQL) MigrationsCurrent(ctx context.Context) error {
	d, fsys, dir := goose.DialectSQLite3, fs.FS(sqliteMigrations), "migrations/sqlite"
	if _, pg := s.db.Driver().(*stdlib.Driver); pg {
		d, fsys, dir = goose.DialectPostgres, postgresMigrations, "migrations/postgres"
	}
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(d, s.db, sub)
	if err != nil {
		return err
	}
	current, embedded, err := p.GetVersions(ctx)
	if err != nil {
		return err
	}
	if current != embedded {
		return fmt.Errorf("schema version %d, this binary's is %d", current, embedded)
	}
	return nil
}
