package main

// The restore drill (issue 14.2) against the real binary: send over SMTP,
// claim and set a password, back up while serving, destroy the data
// folder, restore with the officer's escrow key, sign in and read the
// message, verify the audit chain; and the refusals around it.

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b, 0o600)
}

// dirNames lists dir's entries, to show a refused restore wrote nothing.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range ents {
		ns = append(ns, e.Name())
	}
	sort.Strings(ns)
	return ns
}

func TestBackupRestoreDrill(t *testing.T) {
	root := t.TempDir()
	data, backups, officer := filepath.Join(root, "data"), filepath.Join(root, "backups"), filepath.Join(root, "officer")
	const patient, patientPw = "pat.backup@example.net", "restored lantern 42"

	p := startDev(t, data)
	secret := addStaff(t, data, staffEmail, "laptop")
	m := newMsg(staffEmail, patient, "backup")
	if err := submit(p.SMTP, staffEmail, secret, m, nil); err != nil {
		t.Fatalf("send: %v\n%s", err, p.tail())
	}
	token := waitNotices(t, p, data, []string{patient}, 1)[patient][0].token
	claimAndCheck(t, p, token, patientPw, m)

	// Backed up while the gateway serves.
	r := runCLI(t, "", "backup", "create", "--data", data, "--out", backups)
	if r.code != 0 {
		t.Fatalf("backup create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	file := strings.SplitN(r.stdout, "\n", 2)[0]
	id := strings.TrimSuffix(filepath.Base(file), ".phigate-backup")
	id = id[strings.LastIndexByte(id, '-')+1:]
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("backup file %q: %v", file, err)
	}
	for _, canary := range []string{m.subject, m.text, m.attName, patient} {
		if bytes.Contains(raw, []byte(canary)) {
			t.Fatalf("backup file holds %q in the clear", canary)
		}
	}
	if r := runCLI(t, "", "backup", "verify", "--data", data, file); r.code != 0 || !strings.Contains(r.stdout, "OK: backup "+id) ||
		!strings.Contains(r.stdout, "this gateway's key") {
		t.Fatalf("backup verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "backup", "list", "--data", data, "--dir", backups); r.code != 0 || !strings.Contains(r.stdout, filepath.Base(file)) ||
		!strings.Contains(r.stdout, " yes") {
		t.Fatalf("backup list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "audit", "export", "--data", data, "--action", "backup.create"); r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Fatalf("no backup.create entry naming %s: exit %d\n%s%s", id, r.code, r.stdout, r.stderr)
	}
	p.stop()

	// What survives the loss: the officer's escrow key and passphrase, and
	// the master key kept apart from the backups.
	if err := os.MkdirAll(officer, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"escrow-private.asc", "escrow-passphrase.txt", "master.key"} {
		copyFile(t, filepath.Join(data, f), filepath.Join(officer, f))
	}
	escrowKey, passFile := filepath.Join(officer, "escrow-private.asc"), filepath.Join(officer, "escrow-passphrase.txt")
	pass, _ := os.ReadFile(passFile)

	r = runCLI(t, string(pass), "backup", "restore", file, "--data", data, "--escrow-key", escrowKey)
	if r.code != 1 || !strings.Contains(r.stderr, "refused") {
		t.Fatalf("restore over the live data folder: exit %d, want 1 and a refusal\n%s%s", r.code, r.stdout, r.stderr)
	}

	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(officer, "master.key"), filepath.Join(data, "master.key"))
	only := []string{"master.key"}

	r = runCLI(t, "not the passphrase\n", "backup", "restore", file, "--data", data, "--escrow-key", escrowKey)
	if r.code != 1 || !strings.Contains(r.stderr, "wrong passphrase") {
		t.Fatalf("restore with a wrong passphrase: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := dirNames(t, data); strings.Join(got, ",") != strings.Join(only, ",") {
		t.Fatalf("a refused restore wrote %v into the data folder", got)
	}

	bad := append([]byte(nil), raw...)
	bad[bytes.Index(bad, []byte("payload.pgp"))+512+len(raw)/3] ^= 0x40
	badFile := filepath.Join(root, "tampered.phigate-backup")
	writeFile(t, badFile, bad, 0o600)
	if r := runCLI(t, "", "backup", "verify", "--data", data, badFile); r.code != 1 || !strings.Contains(r.stdout, "FAILED") {
		t.Fatalf("verify of a tampered backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "backup", "restore", badFile, "--data", data, "--escrow-key", escrowKey, "--passphrase-file", passFile); r.code != 1 {
		t.Fatalf("restore of a tampered backup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := dirNames(t, data); strings.Join(got, ",") != strings.Join(only, ",") {
		t.Fatalf("a tampered backup's restore wrote %v into the data folder", got)
	}

	r = runCLI(t, "", "backup", "restore", file, "--data", data, "--escrow-key", escrowKey, "--passphrase-file", passFile)
	if r.code != 0 || !strings.Contains(r.stdout, "restored backup "+id) {
		t.Fatalf("restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	for _, d := range []string{data, backups} {
		for _, n := range dirNames(t, d) {
			if strings.HasPrefix(n, ".tmp-") {
				t.Errorf("temporary folder %s left in %s", n, d)
			}
		}
	}
	p2 := startDev(t, data)
	c := newAPI(t, p2)
	c.call("POST", "/api/v1/login", map[string]string{"email": patient, "password": patientPw}, http.StatusOK, nil)
	l := c.list()
	if len(l.Messages) != 1 {
		t.Fatalf("inbox after the restore: %d messages, want 1", len(l.Messages))
	}
	c.checkMessage(l.Messages[0].ID, m)
	p2.stop()

	if r := runCLI(t, "", "audit", "verify", "--data", data); r.code != 0 || !strings.HasPrefix(r.stdout, "OK:") {
		t.Fatalf("audit verify after the restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "audit", "export", "--data", data, "--action", "backup.restore"); r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Fatalf("no backup.restore entry naming %s in the restored trail: exit %d\n%s%s", id, r.code, r.stdout, r.stderr)
	}
	assertNoPHIInLogs(t, []sentMsg{m}, p, p2)
}
