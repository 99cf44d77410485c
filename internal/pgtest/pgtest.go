// Package pgtest gives tests a throw-away PostgreSQL database of their
// own, so the store's tests run against a real server without sharing
// state: every call to URL creates a new database (phigate_test_<random>)
// and drops it when the test ends.
//
// The server is, in order: $PHIGATE_TEST_PG_URL (a postgres:// URL of a
// role that may CREATE DATABASE); one answering at 127.0.0.1:5432 with
// trust authentication as user postgres or root; otherwise a private one
// started for the test (initdb and pg_ctl from /usr/lib/postgresql/*/bin,
// run as user postgres when the test runs as root) and stopped after it.
// Without any of them the test is skipped, or fails when CI=true.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// EnvURL names the variable that points the tests at a server.
const EnvURL = "PHIGATE_TEST_PG_URL"

// Server is a PostgreSQL server the tests may create databases on.
type Server struct {
	admin string // URL of its maintenance database
}

var (
	localOnce sync.Once
	local     *Server // the server found at 127.0.0.1:5432, if any
)

// URL returns the URL of a new, empty database for t, dropped when t ends
// (after every cleanup registered later, such as closing the store).
func URL(t testing.TB) string {
	t.Helper()
	return Start(t).NewDB(t)
}

// Start finds a server for t (see the package comment), starting a private
// one when no other answers. A private server stops when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		if err := ping(u); err != nil {
			t.Fatalf("pgtest: %s does not answer: %v", EnvURL, err)
		}
		return &Server{admin: u}
	}
	localOnce.Do(func() {
		for _, u := range []string{
			"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
			"postgres://root@127.0.0.1:5432/postgres?sslmode=disable",
		} {
			if ping(u) == nil {
				local = &Server{admin: u}
				return
			}
		}
	})
	if local != nil {
		return local
	}
	return startPrivate(t)
}

func ping(u string) error {
	db, err := sql.Open("pgx", u)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// AdminURL is the URL of the server's maintenance database, for what a
// test does outside its own database (roles are server-wide).
func (s *Server) AdminURL() string { return s.admin }

// NewDB creates an empty database and returns its URL; it is dropped
// (with any connection still open to it) when t ends.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "phigate_test_" + hex.EncodeToString(b)
	if err := s.admExec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("pgtest: CREATE DATABASE: %v", err)
	}
	t.Cleanup(func() {
		if err := s.admExec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: DROP DATABASE %s: %v", name, err)
		}
	})
	u, err := url.Parse(s.admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func (s *Server) admExec(stmt string) error {
	db, err := sql.Open("pgx", s.admin)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

// unavailable skips t, or fails it when CI=true (CI must have PostgreSQL).
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("pgtest: no PostgreSQL: %s (CI must provide it: see .ci/run)", why)
	}
	t.Skipf("pgtest: no PostgreSQL (%s); skipping the PostgreSQL run", why)
}

// binDir is the newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl.
func binDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// startPrivate runs initdb and pg_ctl into a fresh directory on a free
// loopback port. PostgreSQL refuses to run as root, so as root the
// directory goes to user postgres and the commands run through runuser.
func startPrivate(t testing.TB) *Server {
	t.Helper()
	bin := binDir()
	if bin == "" {
		unavailable(t, "nothing answers at 127.0.0.1:5432 and initdb/pg_ctl are not installed")
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var asUser []string
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			unavailable(t, "running as root and there is no user postgres to run the server as")
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(name string, args ...string) error {
		argv := append(append(append([]string{}, asUser...), filepath.Join(bin, name)), args...)
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	var lastErr error
	// A port found free can be taken before the server binds it: try a few.
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s", port, dir)
		if lastErr = run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "start"); lastErr != nil {
			continue
		}
		t.Cleanup(func() { _ = run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop") })
		return &Server{admin: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	}
	t.Fatalf("pgtest: starting a private PostgreSQL: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
