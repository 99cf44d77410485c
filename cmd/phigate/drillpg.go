package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// drillDBPrefix names every scratch database a drill of a PostgreSQL
// gateway makes, so one a killed drill left behind can be found.
const drillDBPrefix = "phigate_drill_"

// scratchDB is an empty database on the live server for one drill of a
// PostgreSQL gateway (issue 14.5), made and dropped through the live
// connection.
type scratchDB struct {
	name, url string
	live      *sql.DB
	once      sync.Once
	dropErr   error
}

// leftoverDrillDBs lists the scratch databases on the server: those of a
// drill that was killed (or one running now).
func leftoverDrillDBs(ctx context.Context, live *sql.DB) ([]string, error) {
	rows, err := live.QueryContext(ctx, `SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname`,
		strings.ReplaceAll(drillDBPrefix, "_", `\_`)+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// newScratchDB creates phigate_drill_<random> on the server of liveURL.
// The role needs CREATEDB (or to be a superuser); without it the error
// says so. Scratch databases a killed drill left are named on stderr.
func newScratchDB(ctx context.Context, live *sql.DB, liveURL string, stderr io.Writer) (*scratchDB, error) {
	if left, err := leftoverDrillDBs(ctx, live); err == nil && len(left) > 0 {
		fmt.Fprintf(stderr, "phigate backup drill: scratch databases already on the server, left by a drill that was killed (unless one runs now): %s; "+
			"remove each with DROP DATABASE name WITH (FORCE)\n", strings.Join(left, ", "))
	}
	var role string
	var may bool
	if err := live.QueryRowContext(ctx, `SELECT current_user, rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&role, &may); err != nil {
		return nil, fmt.Errorf("reading the role's privileges: %w", err)
	}
	noPriv := fmt.Errorf("the PostgreSQL role %s lacks the CREATEDB privilege, which a drill needs for its scratch database (a superuser grants it: ALTER ROLE %s CREATEDB)", role, role)
	if !may {
		return nil, noPriv
	}
	u, err := url.Parse(liveURL)
	if err != nil {
		return nil, errors.New("the store url does not parse") // it may hold a password: not in the error
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	s := &scratchDB{name: drillDBPrefix + hex.EncodeToString(b), live: live}
	u.Path = "/" + s.name
	s.url = u.String()
	// CREATE DATABASE cannot run in a transaction: a plain Exec.
	if _, err := live.ExecContext(ctx, `CREATE DATABASE `+s.name); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42501" { // insufficient_privilege
			return nil, noPriv
		}
		return nil, fmt.Errorf("CREATE DATABASE %s: %w", s.name, err)
	}
	return s, nil
}

// drop removes the scratch database (once; later calls return the first
// result), closing what is still connected to it. It uses its own
// context: it runs after an interrupted drill too.
func (s *scratchDB) drop() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := s.live.ExecContext(ctx, `DROP DATABASE IF EXISTS `+s.name+` WITH (FORCE)`)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42601" { // syntax: a server before 13 has no FORCE
			_, err = s.live.ExecContext(ctx, `DROP DATABASE IF EXISTS `+s.name)
		}
		if err != nil {
			s.dropErr = fmt.Errorf("could not drop the scratch database %s (drop it by hand: DROP DATABASE %s): %w", s.name, s.name, err)
		}
	})
	return s.dropErr
}
