package main

// The restore drill of a PostgreSQL gateway (issue 14.5), against the real
// binary on a real server (internal/pgtest: a database of the test's own,
// on every run, not only under PHIGATE_TEST_STORE=postgres): the drill
// restores into a scratch database phigate_drill_<random> on the same
// server, checks it, drops it and records backup.drill in the live trail.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/pgtest"
)

// runCLIEnv is runCLI with env added to the child's environment.
func runCLIEnv(t *testing.T, env []string, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = childEnv(env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("phigate %s: timed out\nstderr: %s", strings.Join(args, " "), errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("phigate %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
}

func pgExec(t *testing.T, u string, stmts ...string) error {
	t.Helper()
	db, err := sql.Open("pgx", u)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(context.Background(), s); err != nil {
			return err
		}
	}
	return nil
}

// dbExists says whether the server at admin has a database called name.
func dbExists(t *testing.T, admin, name string) bool {
	t.Helper()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

var reDrillDB = regexp.MustCompile(`phigate_drill_[0-9a-f]{16}`)

func TestBackupDrillPostgres(t *testing.T) {
	srv := pgtest.Start(t) // skips without PostgreSQL (fails with CI=true)
	pgURL := srv.NewDB(t)
	env := []string{"PHIGATE_STORE_URL=" + pgURL}
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	p := startProc(t, childEnv(env...), "serve", "--dev", "--data", data,
		"--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	p.waitBanner()
	if r := runCLIEnv(t, env, staffPassword+"\n", "user", "add", "--data", data, "--email", staffEmail, "--role", "staff", "--password-stdin"); r.code != 0 {
		t.Fatalf("user add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := runCLIEnv(t, env, "", "user", "app-password", "--data", data, "--email", staffEmail, "--name", "laptop")
	if r.code != 0 {
		t.Fatalf("user app-password: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	secret := strings.TrimSpace(lines[len(lines)-1])
	m := newMsg(staffEmail, "pat.pgdrill@example.net", "pgdrill")
	if err := submit(p.SMTP, staffEmail, secret, m, nil); err != nil {
		t.Fatalf("send: %v\n%s", err, p.tail())
	}
	waitNotices(t, p, data, []string{"pat.pgdrill@example.net"}, 1)
	r = runCLIEnv(t, env, "", "backup", "create", "--data", data, "--out", backups)
	if r.code != 0 {
		t.Fatalf("backup create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	file := strings.SplitN(r.stdout, "\n", 2)[0]
	escrowKey, passFile := filepath.Join(data, "escrow-private.asc"), filepath.Join(data, "escrow-passphrase.txt")
	if _, err := os.Stat(filepath.Join(data, "phigate.db")); err == nil {
		t.Fatal("the gateway made a SQLite database: it is not on PostgreSQL")
	}
	drill := func(f string, env []string) cliResult {
		return runCLIEnv(t, env, "", "backup", "drill", f, "--data", data, "--escrow-key", escrowKey, "--passphrase-file", passFile)
	}

	// A damaged backup fails the drill (at verify: no scratch database is made).
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(raw)
	bad[len(bad)/2] ^= 0x40
	badFile := filepath.Join(root, "damaged.phigate-backup")
	writeFile(t, badFile, bad, 0o600)
	if r := drill(badFile, env); r.code != 1 || !strings.Contains(r.stderr, "FAILED") {
		t.Fatalf("drill of a damaged backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st, detail := drillCheck(t, data, env...); st != "fail" || !strings.Contains(detail, "outcome failed") {
		t.Fatalf("after a failed drill: %s %q", st, detail)
	}

	// The real drill, while the gateway serves.
	r = drill(file, env)
	if r.code != 0 || !strings.Contains(r.stdout, "drill passed") || !strings.Contains(r.stdout, "1 message opened") {
		t.Fatalf("drill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	scratch := reDrillDB.FindString(r.stdout)
	if scratch == "" {
		t.Fatalf("the drill names no scratch database:\n%s", r.stdout)
	}
	if dbExists(t, srv.AdminURL(), scratch) {
		t.Errorf("scratch database %s is still on the server after the drill", scratch)
	}
	for _, n := range dirNames(t, data) {
		if strings.HasPrefix(n, ".tmp-") {
			t.Errorf("scratch folder %s left in the data folder", n)
		}
	}
	id := strings.TrimSuffix(filepath.Base(file), ".phigate-backup")
	id = id[strings.LastIndexByte(id, '-')+1:]
	if e := drillEntries(t, data, env...); strings.Count(e, "backup.drill") != 2 || !strings.Contains(e, id) ||
		!strings.Contains(e, "scratch_database") {
		t.Errorf("backup.drill entries in the live trail:\n%s", e)
	}
	if st, detail := drillCheck(t, data, env...); st != "pass" || !strings.Contains(detail, "backup "+id) {
		t.Errorf("after the drill: %s %q", st, detail)
	}

	// A scratch database a killed drill left is named by the next drill.
	b := make([]byte, 8)
	rand.Read(b)
	left := "phigate_drill_" + hex.EncodeToString(b)
	if err := pgExec(t, srv.AdminURL(), "CREATE DATABASE "+left); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgExec(t, srv.AdminURL(), "DROP DATABASE IF EXISTS "+left+" WITH (FORCE)") })

	// A role without CREATEDB: the drill fails naming the privilege, and
	// the failure is recorded with its stage.
	role := "phigate_nocreatedb_" + hex.EncodeToString(b)
	if err := pgExec(t, srv.AdminURL(), "CREATE ROLE "+role+" LOGIN NOCREATEDB NOSUPERUSER"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = pgExec(t, pgURL, "DROP OWNED BY "+role)
		_ = pgExec(t, srv.AdminURL(), "DROP ROLE IF EXISTS "+role)
	})
	if err := pgExec(t, pgURL, "GRANT ALL ON SCHEMA public TO "+role, "GRANT ALL ON ALL TABLES IN SCHEMA public TO "+role,
		"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "+role); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(pgURL)
	u.User = url.User(role)
	if err := pgExec(t, u.String(), "SELECT 1"); err != nil {
		// pgtest's servers trust every role; one given by PHIGATE_TEST_PG_URL may not.
		t.Logf("the server does not let role %s in (%v): the CREATEDB case is not run", role, err)
	} else {
		r = drill(file, []string{"PHIGATE_STORE_URL=" + u.String()})
		if r.code != 1 || !strings.Contains(r.stderr, "CREATEDB") || !strings.Contains(r.stderr, "FAILED at scratch database") ||
			!strings.Contains(r.stderr, left) {
			t.Fatalf("drill as a role without CREATEDB: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if e := drillEntries(t, data, env...); strings.Count(e, "backup.drill") != 3 || !strings.Contains(e, "scratch database") {
			t.Errorf("backup.drill entries after the refused drill:\n%s", e)
		}
		if st, detail := drillCheck(t, data, env...); st != "fail" || !strings.Contains(detail, "outcome failed") {
			t.Errorf("after the refused drill: %s %q", st, detail)
		}
	}

	if r := runCLIEnv(t, env, "", "audit", "verify", "--data", data); r.code != 0 || !strings.HasPrefix(r.stdout, "OK:") {
		t.Fatalf("audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.stop()
	assertNoPHIInLogs(t, []sentMsg{m}, p)
}
