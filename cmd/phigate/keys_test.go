package main

// Issue 14.3: key rotation through the real binary, as docs/operations.md
// tells an operator to run it: master key (paused, killed, resumed),
// signing key, escrow key; the gateway keeps working at every step.

import (
	"database/sql"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

// readAs logs in as a recipient and checks they read exactly msgs, every
// one signature-verified.
func readAs(t *testing.T, p *proc, email, password string, msgs ...sentMsg) {
	t.Helper()
	c := newAPI(t, p)
	c.call("POST", "/api/v1/login", map[string]string{"email": email, "password": password}, http.StatusOK, nil)
	l := c.list()
	if len(l.Messages) != len(msgs) {
		t.Fatalf("%s: %d messages, want %d", email, len(l.Messages), len(msgs))
	}
	for _, lm := range l.Messages {
		if lm.Signature != "verified" {
			t.Errorf("%s: message %s signature %q, want verified", email, lm.ID, lm.Signature)
		}
	}
	// Newest first in the inbox; msgs are oldest first.
	for i, lm := range l.Messages {
		c.checkMessage(lm.ID, msgs[len(msgs)-1-i])
	}
}

func TestCLIKeyRotation(t *testing.T) {
	data := t.TempDir()
	const patA, patB, pw = "pat.a.rotate@example.net", "pat.b.rotate@example.net", "rotating compass 77"

	p := startDev(t, data)
	secret := addStaff(t, data, staffEmail, "laptop")
	m1, m2 := newMsg(staffEmail, patA, "before-a"), newMsg(staffEmail, patB, "before-b")
	for _, m := range []sentMsg{m1, m2} {
		if err := submit(p.SMTP, staffEmail, secret, m, nil); err != nil {
			t.Fatalf("send: %v\n%s", err, p.tail())
		}
	}
	notices := waitNotices(t, p, data, []string{patA, patB}, 1)
	claimAndCheck(t, p, notices[patA][0].token, pw, m1)
	p.stop()
	oldMaster, _ := os.ReadFile(filepath.Join(data, "master.key"))

	// 1. Paused by --limit: the rotation is under way.
	r := runCLI(t, "", "keys", "rotate-master", "--data", data, "--batch", "1", "--limit", "2")
	if r.code != 3 || !strings.Contains(r.stdout, "paused after re-sealing 2 values") {
		t.Fatalf("rotate-master --limit 2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "keys", "status", "--data", data); r.code != 0 || !strings.Contains(r.stdout, "UNDER WAY") {
		t.Fatalf("keys status half-way: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// 2. The gateway runs half-way: recipients read, staff send (written
	// under the old key, re-sealed by the next run).
	p = startDev(t, data)
	readAs(t, p, patA, pw, m1)
	m3 := newMsg(staffEmail, patA, "during")
	if err := submit(p.SMTP, staffEmail, secret, m3, nil); err != nil {
		t.Fatalf("send half-way: %v\n%s", err, p.tail())
	}
	readAs(t, p, patA, pw, m1, m3)
	p.stop()

	// 3. A run killed (SIGKILL) once it has committed more batches, then
	// one that finishes.
	db, err := sql.Open("sqlite", filepath.Join(data, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	resealed := func() (n int64) {
		db.QueryRow(`SELECT resealed FROM key_epochs WHERE state = 'rotating'`).Scan(&n)
		return n
	}
	was := resealed()
	cmd := exec.Command(binPath, "keys", "rotate-master", "--data", data, "--batch", "1")
	cmd.Env = childEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); resealed() <= was && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
	cmd.Process.Kill()
	err = cmd.Wait()
	if _, statErr := os.Stat(filepath.Join(data, "master.key.next")); statErr == nil {
		t.Logf("killed mid-rotation (%v) with %d values re-sealed (%d before this run); running it again", err, resealed(), was)
		// The gateway works after the kill too, with both keys.
		p = startDev(t, data)
		readAs(t, p, patA, pw, m1, m3)
		p.stop()
		r = runCLI(t, "", "keys", "rotate-master", "--data", data)
		if r.code != 0 || !strings.Contains(r.stdout, "finished the rotation: master key") || !strings.Contains(r.stdout, "is active (epoch 2)") {
			t.Fatalf("rotate-master resumed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	} else {
		t.Logf("the run finished before the kill (%v)", err)
	}
	newMaster, _ := os.ReadFile(filepath.Join(data, "master.key"))
	if string(newMaster) == string(oldMaster) {
		t.Fatal("master.key still holds the old key")
	}
	if _, err := os.Stat(filepath.Join(data, "master.key.next")); !os.IsNotExist(err) {
		t.Errorf("master.key.next left behind: %v", err)
	}
	if r := runCLI(t, "", "keys", "status", "--data", data); r.code != 0 || !strings.Contains(r.stdout, "epoch 2") ||
		strings.Contains(r.stdout, "UNDER WAY") {
		t.Fatalf("keys status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// 5. Signing key. A backup signed by the old key still verifies.
	backups := filepath.Join(t.TempDir(), "backups")
	r = runCLI(t, "", "backup", "create", "--data", data, "--out", backups)
	if r.code != 0 {
		t.Fatalf("backup create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	oldBackup := strings.SplitN(r.stdout, "\n", 2)[0]
	r = runCLI(t, "", "keys", "rotate-signing", "--data", data)
	if r.code != 0 || !strings.Contains(r.stdout, "the old public key is kept") {
		t.Fatalf("rotate-signing: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "backup", "verify", "--data", data, oldBackup); r.code != 0 || !strings.Contains(r.stdout, "this gateway's key") {
		t.Fatalf("backup from before the signing rotation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "keys", "export-signing", "--data", data); r.code != 0 || !strings.HasPrefix(r.stdout, "-----BEGIN PGP PUBLIC KEY BLOCK") {
		t.Fatalf("keys export-signing: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// 6. Escrow key: the officer makes a new one, the configuration names
	// its public half, stored messages are re-wrapped with the old one.
	oldEscrow := filepath.Join(data, "escrow-private.asc")
	oldPass := filepath.Join(data, "escrow-passphrase.txt")
	nk, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "escrow 2"})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := nk.PublicArmored()
	writeFile(t, filepath.Join(data, "escrow-public.asc"), pub, 0o600)
	r = runCLI(t, "", "keys", "rewrap-escrow", "--data", data, "--old-escrow-key", oldEscrow, "--passphrase-file", oldPass)
	if r.code != 0 || !strings.Contains(r.stdout, "re-wrapped") || strings.Contains(r.stdout, "re-wrapped 0 messages") {
		t.Fatalf("rewrap-escrow: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "not it\n", "keys", "rewrap-escrow", "--data", data, "--old-escrow-key", oldEscrow); r.code != 1 {
		t.Errorf("rewrap-escrow with a wrong passphrase: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// 7. Everything still reads, after all three: the claimed patient,
	// the pending one claiming now (pending key re-wrapped under the new
	// master key), messages signed by the old gateway key verified.
	p = startDev(t, data)
	claimAndCheck(t, p, notices[patB][0].token, pw, m2)
	m4 := newMsg(staffEmail, patB, "after")
	if err := submit(p.SMTP, staffEmail, secret, m4, nil); err != nil {
		t.Fatalf("send after the rotations (app password re-keyed): %v\n%s", err, p.tail())
	}
	readAs(t, p, patB, pw, m2, m4)
	readAs(t, p, patA, pw, m1, m3)
	p.stop()

	if r := runCLI(t, "", "audit", "verify", "--data", data); r.code != 0 || !strings.HasPrefix(r.stdout, "OK:") {
		t.Fatalf("audit verify across the key epochs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "audit", "export", "--data", data, "--action", "keys.*")
	for _, a := range []string{`"keys.rotate_master.start"`, `"keys.rotate_master"`, `"keys.rotate_signing"`, `"keys.rewrap_escrow"`} {
		if !strings.Contains(r.stdout, a) {
			t.Errorf("no %s entry in the trail:\n%s", a, r.stdout)
		}
	}

	// 8. A backup after all three restores into an empty folder with the
	// current master key and the new escrow key: the key epochs and the
	// signing-key history travel with it.
	r = runCLI(t, "", "backup", "create", "--data", data, "--out", backups)
	if r.code != 0 {
		t.Fatalf("backup create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	file := strings.SplitN(r.stdout, "\n", 2)[0]
	officer := t.TempDir()
	locked, err := pcrypto.LockArmoredCompat(nk, []byte("officer passphrase 2"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(officer, "escrow-private.asc"), locked, 0o600)
	writeFile(t, filepath.Join(officer, "pass.txt"), []byte("officer passphrase 2\n"), 0o600)
	restored := t.TempDir()
	copyFile(t, filepath.Join(data, "master.key"), filepath.Join(restored, "master.key"))
	r = runCLI(t, "", "backup", "restore", file, "--data", restored, "--escrow-key", filepath.Join(officer, "escrow-private.asc"),
		"--passphrase-file", filepath.Join(officer, "pass.txt"))
	if r.code != 0 {
		t.Fatalf("restore after the rotations: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p2 := startDev(t, restored)
	readAs(t, p2, patA, pw, m1, m3)
	readAs(t, p2, patB, pw, m2, m4)
	p2.stop()
	if r := runCLI(t, "", "audit", "verify", "--data", restored); r.code != 0 || !strings.HasPrefix(r.stdout, "OK:") {
		t.Fatalf("audit verify of the restored trail: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	assertNoPHIInLogs(t, []sentMsg{m1, m2, m3, m4}, p, p2)
}
