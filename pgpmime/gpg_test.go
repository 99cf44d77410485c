package pgpmime

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/internal/gpgtest"
	"github.com/phigate/phigate/internal/testtool"
)

// newGPG makes a GnuPG home whose keys have no passphrase.
func newGPG(t testing.TB) *gpgtest.Home {
	return gpgtest.New(t, "--pinentry-mode", "loopback", "--passphrase", "")
}

// checkGPGDecrypt has gpg decrypt input and asserts a good decryption, a
// good and valid signature by signer, and exactly the plaintext want.
func checkGPGDecrypt(t *testing.T, g *gpgtest.Home, name string, input []byte, signer *pcrypto.Key, want string) {
	t.Helper()
	out, st, err := g.Run(input, "--decrypt")
	if err != nil {
		t.Fatalf("%s: %v\nstatus:\n%s", name, err, st)
	}
	fpr := strings.ToUpper(signer.Fingerprint())
	for _, w := range []string{"DECRYPTION_OKAY", "GOODMDC", "GOODSIG " + fpr[len(fpr)-16:], "VALIDSIG " + fpr} {
		if !strings.Contains(st, "[GNUPG:] "+w) {
			t.Fatalf("%s: gpg status lacks %q:\n%s", name, w, st)
		}
	}
	for _, bad := range []string{"BADSIG", "ERRSIG", "DECRYPTION_FAILED"} {
		if strings.Contains(st, "[GNUPG:] "+bad) {
			t.Fatalf("%s: gpg status has %s:\n%s", name, bad, st)
		}
	}
	if out != want {
		t.Fatalf("%s: gpg plaintext differs:\n got %q\nwant %q", name, out, want)
	}
}

// TestGPGDecryptsPGPMIME is the interop test of issue #4: GnuPG decrypts a
// PGP/MIME message phigate made, verifies the gateway's signature, and gets
// back exactly the original entity.
func TestGPGDecryptsPGPMIME(t *testing.T) {
	g := newGPG(t)
	gw, escrow := testKey(t, "gateway"), testKey(t, "escrow")
	rcpt, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "Jane Roe", Email: "jane.roe@patient.example"})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := rcpt.PrivateBytes()
	if err != nil {
		t.Fatal(err)
	}
	gwPub, _ := gw.PublicArmored()
	g.MustRun(priv, "--import")
	g.MustRun(gwPub, "--import")

	out, err := Encrypt([]byte(origHeader+origBody), testOptions(), gw, rcpt.Public(), escrow.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := parsePGPMIME(t, out)
	want := protectedHeader + origBody
	if !strings.HasSuffix(want, origBody) || !strings.Contains(want, "Subject: "+canarySubject+"\r\n") {
		t.Fatal("test expectation is wrong")
	}
	checkGPGDecrypt(t, g, "armored body of the second part", p.body2, gw, want)
	checkGPGDecrypt(t, g, "second MIME part with its header", p.raw2, gw, want)
	checkGPGDecrypt(t, g, "whole PGP/MIME message", out, gw, want)

	// The same message from a plain LF-only source: gpg sees CRLF.
	lf := strings.ReplaceAll(origHeader+origBody, "\r\n", "\n")
	out, err = Encrypt([]byte(lf), testOptions(), gw, rcpt.Public())
	if err != nil {
		t.Fatal(err)
	}
	checkGPGDecrypt(t, g, "LF source", parsePGPMIME(t, out).body2, gw, want)
}

// TestGPGMadeKeys runs CheckRecipientKey on keys GnuPG made, the way people
// will register them, and encrypts to the good ones for gpg to decrypt.
func TestGPGMadeKeys(t *testing.T) {
	testtool.Need(t, "gpg")
	gw := testKey(t, "gateway")
	gwPub, _ := gw.PublicArmored()
	// Keys are made while the subtests run: take "now" at each check, or a
	// key made a moment later would be "created in the future".
	later := time.Now().Add(49 * time.Hour)

	good := func(t *testing.T, g *gpgtest.Home, fpr, addr string) {
		t.Helper()
		k, err := CheckRecipientKey(g.Export(fpr), addr, time.Now())
		if err != nil {
			t.Fatalf("gpg key refused: %v", err)
		}
		g.MustRun(gwPub, "--import")
		raw := "From: a@clinic.example\r\nTo: " + addr + "\r\nSubject: check\r\n\r\nhello " + fpr + "\r\n"
		out, err := Encrypt([]byte(raw), Options{From: "a@clinic.example", To: addr}, gw, k)
		if err != nil {
			t.Fatal(err)
		}
		want := "From: a@clinic.example\r\nTo: " + addr + "\r\nSubject: check\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\nhello " + fpr + "\r\n"
		checkGPGDecrypt(t, g, "to gpg key", parsePGPMIME(t, out).body2, gw, want)
	}

	cases := []struct {
		name string
		run  func(t *testing.T, g *gpgtest.Home)
	}{
		{"ed25519+cv25519", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Good <good@example.test>", "future-default", "default", "never")
			good(t, g, fpr, "good@example.test")
			_, err := CheckRecipientKey(g.Export(fpr), "other@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyAddress, "user ID")
		}},
		{"bare address user ID", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("bare@example.test", "future-default", "default", "never")
			if _, err := CheckRecipientKey(g.Export(fpr), "Bare@Example.test", time.Now()); err != nil {
				t.Fatal(err)
			}
		}},
		{"rsa2048", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Rsa <rsa@example.test>", "rsa2048", "sign,cert", "never")
			g.MustRun(nil, "--quick-add-key", fpr, "rsa2048", "encr", "never")
			good(t, g, fpr, "rsa@example.test")
		}},
		{"rsa1024", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Weak <weak@example.test>", "rsa1024", "sign,cert", "never")
			g.MustRun(nil, "--quick-add-key", fpr, "rsa1024", "encr", "never")
			_, err := CheckRecipientKey(g.Export(fpr), "weak@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyWeak, "1024-bit RSA")
		}},
		{"dsa+elgamal", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Dsa <dsa@example.test>", "dsa2048", "sign,cert", "never")
			g.MustRun(nil, "--quick-add-key", fpr, "elg2048", "encr", "never")
			_, err := CheckRecipientKey(g.Export(fpr), "dsa@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyWeak, "DSA")
		}},
		{"signing only", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Sig <sig@example.test>", "ed25519", "sign", "never")
			_, err := CheckRecipientKey(g.Export(fpr), "sig@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyNoEncryption, "no encryption subkey")
		}},
		{"revoked with gpg's revocation certificate", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Rev <rev@example.test>", "future-default", "default", "never")
			cert, err := os.ReadFile(filepath.Join(g.Dir, "openpgp-revocs.d", fpr+".rev"))
			if err != nil {
				t.Fatal(err)
			}
			// gpg guards the certificate with a leading colon.
			g.MustRun(bytes.ReplaceAll(cert, []byte(":-----BEGIN"), []byte("-----BEGIN")), "--import")
			_, err = CheckRecipientKey(g.Export(fpr), "rev@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyRevoked, "revoked")
		}},
		{"expiring key", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Exp <exp@example.test>", "future-default", "default", "1d")
			if _, err := CheckRecipientKey(g.Export(fpr), "exp@example.test", time.Now()); err != nil {
				t.Fatalf("refused before expiry: %v", err)
			}
			_, err := CheckRecipientKey(g.Export(fpr), "exp@example.test", later)
			refusal(t, err, pcrypto.ErrKeyExpired, "expired on")
		}},
		{"expiring encryption subkey", func(t *testing.T, g *gpgtest.Home) {
			fpr := g.GenKey("Sub <sub@example.test>", "ed25519", "sign", "never")
			g.MustRun(nil, "--quick-add-key", fpr, "cv25519", "encr", "1d")
			_, err := CheckRecipientKey(g.Export(fpr), "sub@example.test", later)
			refusal(t, err, pcrypto.ErrKeyExpired, "encryption subkey expired on")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newGPG(t))
		})
	}
}
