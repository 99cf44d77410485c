package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/postgres/*.sql
var postgresMigrations embed.FS

const (
	// pgMaxConns bounds one node's connections: PostgreSQL's default
	// max_connections is 100, shared by every node and the operator's tools.
	pgMaxConns = 20
	// auditLockKey names the advisory lock that orders audit appends
	// (an arbitrary constant: "phigate audit" folded into 63 bits).
	auditLockKey = 0x7068696761756474
)

// Open opens the store named by url: postgres:// or postgresql:// is a
// PostgreSQL server; "" is the embedded SQLite file at sqlitePath, and
// sqlite:PATH one at PATH.
func Open(ctx context.Context, url, sqlitePath string) (*SQL, error) {
	switch {
	case url == "":
		return OpenSQLite(ctx, sqlitePath)
	case strings.HasPrefix(url, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(url, "sqlite:"))
	case IsPostgresURL(url):
		return OpenPostgres(ctx, url)
	}
	return nil, errors.New("store: url must start with postgres://, postgresql:// or sqlite:")
}

// IsPostgresURL says url names a PostgreSQL server.
func IsPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// OpenPostgres connects to the PostgreSQL database at url (a libpq URL:
// sslmode, sslrootcert ... as there) and runs migrations. Every
// connection sets synchronous_commit=on, and the server's value is read
// back: a COMMIT that returned is on disk before intake answers 250.
func OpenPostgres(ctx context.Context, url string) (*SQL, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// The URL may hold a password: not in the error.
		return nil, errors.New("store: the PostgreSQL url does not parse")
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns)
	if err := checkDurable(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	// Nodes starting together: goose's session lock lets one migrate while
	// the others wait, then find nothing left to do.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := migrate(ctx, db, goose.DialectPostgres, postgresMigrations, "migrations/postgres", 0, goose.WithSessionLocker(locker)); err != nil {
		db.Close()
		return nil, err
	}
	s := &SQL{
		db: db,
		// No FOR UPDATE on the head row: auditLock already orders the
		// appends, and FOR UPDATE would need the UPDATE privilege on
		// audit_log that the nodes' role must not have (docs/deploy.md).
		headLock:  "",
		auditLock: fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", int64(auditLockKey)),
		leaseLock: " FOR UPDATE SKIP LOCKED",
		retryable: pgRetryable,
		userTx:    &sql.TxOptions{Isolation: sql.LevelSerializable},
	}
	s.start()
	return s, nil
}

// checkDurable refuses a server where commits may be lost: the setting is
// asked for per connection, but a role or database default with
// ALTER ... SET synchronous_commit TO off would undo it in the URL's
// options, so the effective value is read back.
func checkDurable(ctx context.Context, db *sql.DB) error {
	var v string
	if err := db.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&v); err != nil {
		return fmt.Errorf("store: connecting to PostgreSQL: %w", err)
	}
	if v == "off" {
		return errors.New("store: PostgreSQL synchronous_commit is off: a 250 would not mean the message is on disk; turn it on")
	}
	var fsync string
	if err := db.QueryRowContext(ctx, `SHOW fsync`).Scan(&fsync); err != nil {
		return err
	}
	if fsync == "off" {
		return errors.New("store: PostgreSQL fsync is off: committed messages may be lost in a crash; turn it on")
	}
	return nil
}

// pgRetryable: the transaction lost to a concurrent one and can run
// again as it is (SQLSTATE 40001 serialization_failure, 40P01
// deadlock_detected).
func pgRetryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}
