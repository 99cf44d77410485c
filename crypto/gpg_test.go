package crypto

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type gpgHome struct {
	t    *testing.T
	bin  string
	home string
}

// newGPGHome makes a throwaway GNUPGHOME; without gpg the test is skipped,
// except under CI=true, where a missing gpg is a failure.
func newGPGHome(t *testing.T) *gpgHome {
	t.Helper()
	bin, err := exec.LookPath("gpg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gpg not installed (required when CI=true)")
		}
		t.Skip("gpg not installed")
	}
	// Short path: gpg-agent's socket path must fit in sun_path.
	home, err := os.MkdirTemp("", "pg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &gpgHome{t: t, bin: bin, home: home}
	t.Cleanup(func() {
		// Stop the agent this home started (by its home, not by name).
		if gc, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(gc, "--kill", "gpg-agent")
			cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
			_ = cmd.Run()
		}
		os.RemoveAll(home)
	})
	return g
}

func (g *gpgHome) run(stdin []byte, args ...string) (stdout, status string, err error) {
	g.t.Helper()
	statusFile := filepath.Join(g.home, "status")
	full := append([]string{"--homedir", g.home, "--batch", "--no-tty", "--status-file", statusFile}, args...)
	cmd := exec.Command(g.bin, full...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	st, _ := os.ReadFile(statusFile)
	if err != nil {
		err = fmt.Errorf("gpg %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), string(st), err
}

func (g *gpgHome) mustRun(stdin []byte, args ...string) (string, string) {
	g.t.Helper()
	out, st, err := g.run(stdin, args...)
	if err != nil {
		g.t.Fatal(err)
	}
	return out, st
}

func TestGPGInterop(t *testing.T) {
	g := newGPGHome(t)
	gw, escrow := testKey(t, "gateway"), testKey(t, "escrow")
	user, pending := freshKey(t, "user"), freshKey(t, "pending")
	userPriv, err := user.PrivateBytes()
	if err != nil {
		t.Fatal(err)
	}
	gwPub, _ := gw.PublicArmored()
	g.mustRun(userPriv, "--import")
	g.mustRun(gwPub, "--import")
	pt := bytes.Repeat([]byte("Patient: Jane Roe, MRN 0042, results normal.\n"), 200)

	decrypt := func(name string, msg []byte) {
		t.Helper()
		out, st := g.mustRun(msg, "--decrypt")
		if out != string(pt) {
			t.Fatalf("%s: gpg plaintext differs (%d bytes)", name, len(out))
		}
		for _, want := range []string{"DECRYPTION_OKAY", "GOODMDC", "GOODSIG " + strings.ToUpper(gw.Fingerprint()[24:]), "VALIDSIG " + strings.ToUpper(gw.Fingerprint())} {
			if !strings.Contains(st, "[GNUPG:] "+want) {
				t.Fatalf("%s: gpg status lacks %q:\n%s", name, want, st)
			}
		}
	}

	// Our message, binary and armored.
	s := mustSeal(t, pt, gw, user.Public(), escrow.Public())
	decrypt("binary", s.Bytes())
	arm, _ := s.Armor()
	decrypt("armored", arm)

	// A message rewrapped from the pending key to the user's key.
	s2 := mustSeal(t, pt, gw, pending.Public(), escrow.Public())
	kp, err := Rewrap(s2.KeyPackets, pending, user.Public())
	if err != nil {
		t.Fatal(err)
	}
	decrypt("rewrapped", (&Sealed{KeyPackets: kp, Data: s2.Data}).Bytes())

	// Other direction: gpg (default settings, so ZLIB compression) signs with
	// the gateway key and encrypts to the user; Open reads it.
	gwPriv, _ := gw.PrivateBytes()
	g.mustRun(gwPriv, "--import")
	enc, _ := g.mustRun(pt, "--trust-model", "always", "--sign", "--encrypt",
		"--local-user", gw.Fingerprint(), "--recipient", user.Fingerprint(), "--output", "-")
	ps, err := ParseSealed([]byte(enc))
	if err != nil {
		t.Fatal(err)
	}
	got, sig, err := Open(ps, user, gw.Public())
	if err != nil || !bytes.Equal(got, pt) || sig != SigVerified {
		t.Fatalf("gpg-made message: %v %v", sig, err)
	}
}

// TestGPGImportsCompatLockedKey: the escrow key locked with
// LockArmoredCompat imports into gpg 2.2 and decrypts with the passphrase.
func TestGPGImportsCompatLockedKey(t *testing.T) {
	g := newGPGHome(t)
	gw, escrow := testKey(t, "gateway"), testKey(t, "escrow")
	pass := "break glass 2026"
	locked, err := LockArmoredCompat(escrow, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	g.mustRun(locked, "--import")
	gwPub, _ := gw.PublicArmored()
	g.mustRun(gwPub, "--import")
	s := mustSeal(t, []byte("escrow copy"), gw, testKey(t, "alice").Public(), escrow.Public())
	if _, _, err := g.run(s.Bytes(), "--pinentry-mode", "loopback", "--passphrase", "wrong", "--decrypt"); err == nil {
		t.Fatal("gpg decrypted with a wrong passphrase")
	}
	out, _ := g.mustRun(s.Bytes(), "--pinentry-mode", "loopback", "--passphrase", pass, "--decrypt")
	if out != "escrow copy" {
		t.Fatalf("gpg plaintext %q", out)
	}

	// Report (not assert) whether this gpg reads the Argon2/AEAD form.
	a, _ := LockArmored(escrow, []byte(pass))
	g2 := newGPGHome(t)
	_, _, err = g2.run(a, "--import")
	t.Logf("gpg import of Argon2+AEAD-locked key: err=%v", err)
}
