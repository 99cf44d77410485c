package main

// The restore drill that counts (issue 14.5), against the real binary:
// phigate backup drill restores a backup into a scratch folder while the
// gateway serves, checks it, wipes it, and records backup.drill in the
// live trail, which the compliance report's restore-drill check reads.

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// drillCheck returns the compliance report's restore-drill check.
// env is added to the child's environment (PHIGATE_STORE_URL on PostgreSQL).
func drillCheck(t *testing.T, data string, env ...string) (status, detail string) {
	t.Helper()
	r := runCLIEnv(t, env, "", "compliance", "report", "--json", "--data", data)
	var rep struct {
		Safeguards []struct {
			Rule   string
			Checks []struct{ Name, Status, Detail string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("compliance report --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	for _, s := range rep.Safeguards {
		for _, c := range s.Checks {
			if s.Rule == "164.308(a)(7)" && strings.HasPrefix(c.Name, "last restore drill") {
				return c.Status, c.Detail
			}
		}
	}
	t.Fatal("no restore drill check in the report")
	return "", ""
}

func drillEntries(t *testing.T, data string, env ...string) string {
	t.Helper()
	r := runCLIEnv(t, env, "", "audit", "export", "--data", data, "--action", "backup.drill")
	if r.code != 0 {
		t.Fatalf("audit export: exit %d\n%s", r.code, r.stderr)
	}
	return r.stdout
}

func TestBackupDrill(t *testing.T) {
	root := t.TempDir()
	data, backups := filepath.Join(root, "data"), filepath.Join(root, "backups")
	p := startDev(t, data)
	secret := addStaff(t, data, staffEmail, "laptop")
	m := newMsg(staffEmail, "pat.drill@example.net", "drill")
	if err := submit(p.SMTP, staffEmail, secret, m, nil); err != nil {
		t.Fatalf("send: %v\n%s", err, p.tail())
	}
	waitNotices(t, p, data, []string{"pat.drill@example.net"}, 1)
	r := runCLI(t, "", "backup", "create", "--data", data, "--out", backups)
	if r.code != 0 {
		t.Fatalf("backup create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	file := strings.SplitN(r.stdout, "\n", 2)[0]
	escrowKey, passFile := filepath.Join(data, "escrow-private.asc"), filepath.Join(data, "escrow-passphrase.txt")

	if st, detail := drillCheck(t, data); st != "fail" || !strings.Contains(detail, "no restore recorded") {
		t.Fatalf("before any drill: %s %q", st, detail)
	}

	// A mistyped passphrase runs no drill and records nothing.
	if r := runCLI(t, "not it\n", "backup", "drill", file, "--data", data, "--escrow-key", escrowKey); r.code != 1 ||
		!strings.Contains(r.stderr, "wrong passphrase") || strings.Contains(drillEntries(t, data), "backup.drill") {
		t.Fatalf("drill with a wrong passphrase: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A damaged backup fails the drill, and the failure is on the live trail.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(raw)
	bad[len(bad)/2] ^= 0x40
	badFile := filepath.Join(root, "damaged.phigate-backup")
	writeFile(t, badFile, bad, 0o600)
	if r := runCLI(t, "", "backup", "drill", badFile, "--data", data, "--escrow-key", escrowKey, "--passphrase-file", passFile); r.code != 1 ||
		!strings.Contains(r.stderr, "FAILED") {
		t.Fatalf("drill of a damaged backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st, detail := drillCheck(t, data); st != "fail" || !strings.Contains(detail, "outcome failed") {
		t.Fatalf("after a failed drill: %s %q", st, detail)
	}

	// The real drill, while the gateway serves.
	r = runCLI(t, "", "backup", "drill", file, "--data", data, "--escrow-key", escrowKey, "--passphrase-file", passFile)
	if r.code != 0 || !strings.Contains(r.stdout, "drill passed") || !strings.Contains(r.stdout, "1 message opened") {
		t.Fatalf("drill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, n := range dirNames(t, data) {
		if strings.HasPrefix(n, ".tmp-") {
			t.Errorf("scratch folder %s left in the data folder", n)
		}
	}
	id := strings.TrimSuffix(filepath.Base(file), ".phigate-backup")
	id = id[strings.LastIndexByte(id, '-')+1:]
	if e := drillEntries(t, data); strings.Count(e, "backup.drill") != 2 || !strings.Contains(e, id) {
		t.Errorf("backup.drill entries in the live trail:\n%s", e)
	}
	if st, detail := drillCheck(t, data); st != "pass" || !strings.Contains(detail, "backup "+id) {
		t.Errorf("after the drill: %s %q", st, detail)
	}
	// The gateway kept serving, and its trail still verifies.
	if err := submit(p.SMTP, staffEmail, secret, newMsg(staffEmail, "pat.drill@example.net", "after"), nil); err != nil {
		t.Fatalf("send after the drill: %v", err)
	}
	if r := runCLI(t, "", "audit", "verify", "--data", data); r.code != 0 || !strings.HasPrefix(r.stdout, "OK:") {
		t.Fatalf("audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.stop()
	assertNoPHIInLogs(t, []sentMsg{m}, p)
}
