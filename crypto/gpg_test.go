package crypto

import (
	"bytes"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/gpgtest"
)

func TestGPGInterop(t *testing.T) {
	g := gpgtest.New(t)
	gw, escrow := testKey(t, "gateway"), testKey(t, "escrow")
	user, pending := freshKey(t, "user"), freshKey(t, "pending")
	userPriv, err := user.PrivateBytes()
	if err != nil {
		t.Fatal(err)
	}
	gwPub, _ := gw.PublicArmored()
	g.MustRun(userPriv, "--import")
	g.MustRun(gwPub, "--import")
	pt := bytes.Repeat([]byte("Patient: Jane Roe, MRN 0042, results normal.\n"), 200)

	decrypt := func(name string, msg []byte) {
		t.Helper()
		out, st := g.MustRun(msg, "--decrypt")
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
	g.MustRun(gwPriv, "--import")
	enc, _ := g.MustRun(pt, "--trust-model", "always", "--sign", "--encrypt",
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
	g := gpgtest.New(t)
	gw, escrow := testKey(t, "gateway"), testKey(t, "escrow")
	pass := "break glass 2026"
	locked, err := LockArmoredCompat(escrow, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	g.MustRun(locked, "--import")
	gwPub, _ := gw.PublicArmored()
	g.MustRun(gwPub, "--import")
	s := mustSeal(t, []byte("escrow copy"), gw, testKey(t, "alice").Public(), escrow.Public())
	if _, _, err := g.Run(s.Bytes(), "--pinentry-mode", "loopback", "--passphrase", "wrong", "--decrypt"); err == nil {
		t.Fatal("gpg decrypted with a wrong passphrase")
	}
	out, _ := g.MustRun(s.Bytes(), "--pinentry-mode", "loopback", "--passphrase", pass, "--decrypt")
	if out != "escrow copy" {
		t.Fatalf("gpg plaintext %q", out)
	}

	// The Argon2/AEAD form (LockArmored) is why LockArmoredCompat exists:
	// GnuPG 2.2 refuses it. Whatever the version, gpg either imports it as
	// a usable key (it decrypts with the passphrase) or refuses it without
	// keeping a secret key it cannot unlock.
	a, err := LockArmored(escrow, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	g2 := gpgtest.New(t)
	_, _, importErr := g2.Run(a, "--import")
	if gpg22(t, g2) && importErr == nil {
		t.Fatal("GnuPG 2.2 imported an Argon2+AEAD-locked key: LockArmoredCompat may no longer be needed (update crypto/keys.go and this test)")
	}
	if importErr == nil {
		g2.MustRun(gwPub, "--import")
		out, _ := g2.MustRun(s.Bytes(), "--pinentry-mode", "loopback", "--passphrase", pass, "--decrypt")
		if out != "escrow copy" {
			t.Fatalf("gpg imported the Argon2+AEAD-locked key but decrypts to %q", out)
		}
		return
	}
	if sec, _, _ := g2.Run(nil, "--with-colons", "--list-secret-keys"); strings.Contains(sec, "sec:") {
		t.Fatalf("gpg refused the Argon2+AEAD-locked key (%v) but lists a secret key:\n%s", importErr, sec)
	}
}

// gpg22 reports whether h's gpg is GnuPG 2.2.x.
func gpg22(t *testing.T, h *gpgtest.Home) bool {
	t.Helper()
	out, _ := h.MustRun(nil, "--version")
	first, _, _ := strings.Cut(out, "\n")
	return strings.HasPrefix(first, "gpg (GnuPG) 2.2.")
}
