package main

import (
	"strings"
	"testing"
)

// TestCLIHelp: `phigate help`, `phigate user --help` and a subcommand's -h
// print to standard output and exit 0; a missing or wrong subcommand or
// flag prints the usage to standard error and exits 2.
func TestCLIHelp(t *testing.T) {
	ok := []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "phigate user add --email ADDR"},
		{[]string{"--help"}, "phigate serve"},
		{[]string{"user", "--help"}, "phigate user list [--role ROLE[,ROLE]]"},
		{[]string{"help", "user"}, "Every subcommand takes --data DIR"},
		{[]string{"user", "-h"}, "phigate user recover"},
		{[]string{"user", "help"}, "phigate user disable | enable"},
		{[]string{"user", "list", "-h"}, "-role"},
		{[]string{"user", "add", "--help"}, "-password-stdin"},
		{[]string{"backup", "create", "-h"}, "-out DIR"},
		{[]string{"backup", "list", "--help"}, "-dir DIR"},
	}
	for _, c := range ok {
		r := runCLI(t, "", c.args...)
		if r.code != 0 || !strings.Contains(r.stdout, c.want) || r.stderr != "" {
			t.Errorf("phigate %s: exit %d, stdout %q, stderr %q; want exit 0 and %q on stdout only",
				strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.want)
		}
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"user"}, "phigate user list"},
		{[]string{"user", "frobnicate"}, `unknown subcommand "frobnicate"`},
		{[]string{"user", "list", "--bogus"}, "-role"},
	}
	for _, c := range bad {
		r := runCLI(t, "", c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("phigate %s: exit %d, stdout %q, stderr %q; want exit 2 and %q on stderr only",
				strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.want)
		}
	}
}

// TestCLIUserListRoles: `user list` shows the accounts admins manage by
// default, patients with --role patient (or recipient, or all), refuses an
// unknown role, and every listing is in the audit trail by roles and count,
// never by address.
func TestCLIUserListRoles(t *testing.T) {
	dir := t.TempDir()
	startDev(t, dir).stop()
	const patient = "lee.patient@example.net"
	for _, a := range []struct{ email, role string }{{staffEmail, "staff"}, {patient, "patient"}} {
		if r := runCLI(t, staffPassword+"\n", "user", "add", "--data", dir, "--email", a.email, "--role", a.role, "--password-stdin"); r.code != 0 {
			t.Fatalf("user add %s: exit %d: %s", a.role, r.code, r.stderr)
		}
	}
	list := func(role ...string) string {
		t.Helper()
		args := append([]string{"user", "list", "--data", dir}, role...)
		r := runCLI(t, "", args...)
		if r.code != 0 {
			t.Fatalf("phigate %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	cases := []struct {
		args        []string
		staff, pat  bool
		patientRows int
	}{
		{nil, true, false, 0},
		{[]string{"--role", "patient"}, false, true, 1},
		{[]string{"--role", "recipient"}, false, true, 1},
		{[]string{"--role", "staff,patient"}, true, true, 1},
		{[]string{"--role", "all"}, true, true, 1},
	}
	for _, c := range cases {
		out := list(c.args...)
		if strings.Contains(out, staffEmail) != c.staff || strings.Contains(out, patient) != c.pat ||
			strings.Count(out, "\tpatient\t") != c.patientRows {
			t.Errorf("user list %v:\n%s\nwant staff shown %v, patient shown %v", c.args, out, c.staff, c.pat)
		}
	}
	if r := runCLI(t, "", "user", "list", "--data", dir, "--role", "nurse"); r.code != 2 || !strings.Contains(r.stderr, `unknown role "nurse"`) {
		t.Errorf("--role nurse: exit %d, stderr %q; want 2 and the unknown role named", r.code, r.stderr)
	}

	r := runCLI(t, "", "audit", "export", "--data", dir, "--format", "csv", "--action", "user.list")
	if r.code != 0 {
		t.Fatalf("audit export: exit %d: %s", r.code, r.stderr)
	}
	rows := strings.Count(r.stdout, "user.list")
	if rows != len(cases) || !strings.Contains(r.stdout, "staff,patient") || strings.Contains(r.stdout, patient) {
		t.Errorf("audit of the listings (%d rows, want %d, with roles and no address):\n%s", rows, len(cases), r.stdout)
	}
}
