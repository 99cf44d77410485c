package pgpmime

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

// needTool is internal/e2e.NeedTool without that package's weight: a
// missing tool skips the test, except under CI=true, where .ci/run should
// have installed it and a silent skip would hide a broken set-up.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run should have installed it", name)
	}
	t.Skipf("%s not installed (run .ci/run, or apt-get install gnupg)", name)
	return ""
}

type gpgHome struct {
	t    testing.TB
	bin  string
	home string
}

// newGPG makes a throwaway GNUPGHOME and stops its agent afterwards (by
// home, never by process name).
func newGPG(t testing.TB) *gpgHome {
	t.Helper()
	bin := needTool(t, "gpg")
	// Short path: the agent's socket path must fit in sun_path.
	home, err := os.MkdirTemp("", "pm")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if gc, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(gc, "--kill", "gpg-agent")
			cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
			_ = cmd.Run()
		}
		os.RemoveAll(home)
	})
	return &gpgHome{t: t, bin: bin, home: home}
}

// run returns gpg's stdout and its --status-file output.
func (g *gpgHome) run(stdin []byte, args ...string) (string, string, error) {
	statusFile := filepath.Join(g.home, "status")
	full := append([]string{"--homedir", g.home, "--batch", "--no-tty", "--pinentry-mode", "loopback",
		"--passphrase", "", "--status-file", statusFile}, args...)
	cmd := exec.Command(g.bin, full...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
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

// genKey runs --quick-gen-key and returns the new key's fingerprint.
func (g *gpgHome) genKey(uid, algo, usage, expire string) string {
	g.t.Helper()
	_, st := g.mustRun(nil, "--quick-gen-key", uid, algo, usage, expire)
	for _, l := range strings.Split(st, "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[1] == "KEY_CREATED" {
			return f[3]
		}
	}
	g.t.Fatalf("no KEY_CREATED in gpg status:\n%s", st)
	return ""
}

func (g *gpgHome) export(fpr string) []byte {
	g.t.Helper()
	out, _ := g.mustRun(nil, "--armor", "--export", fpr)
	if !strings.Contains(out, "BEGIN PGP PUBLIC KEY BLOCK") {
		g.t.Fatalf("gpg exported nothing for %s", fpr)
	}
	return []byte(out)
}

// checkGPGDecrypt has gpg decrypt input and asserts a good decryption, a
// good and valid signature by signer, and exactly the plaintext want.
func checkGPGDecrypt(t *testing.T, g *gpgHome, name string, input []byte, signer *pcrypto.Key, want string) {
	t.Helper()
	out, st, err := g.run(input, "--decrypt")
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
	g.mustRun(priv, "--import")
	g.mustRun(gwPub, "--import")

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
	needTool(t, "gpg")
	gw := testKey(t, "gateway")
	gwPub, _ := gw.PublicArmored()
	// Keys are made while the subtests run: take "now" at each check, or a
	// key made a moment later would be "created in the future".
	later := time.Now().Add(49 * time.Hour)

	good := func(t *testing.T, g *gpgHome, fpr, addr string) {
		t.Helper()
		k, err := CheckRecipientKey(g.export(fpr), addr, time.Now())
		if err != nil {
			t.Fatalf("gpg key refused: %v", err)
		}
		g.mustRun(gwPub, "--import")
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
		run  func(t *testing.T, g *gpgHome)
	}{
		{"ed25519+cv25519", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Good <good@example.test>", "future-default", "default", "never")
			good(t, g, fpr, "good@example.test")
			_, err := CheckRecipientKey(g.export(fpr), "other@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyAddress, "user ID")
		}},
		{"bare address user ID", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("bare@example.test", "future-default", "default", "never")
			if _, err := CheckRecipientKey(g.export(fpr), "Bare@Example.test", time.Now()); err != nil {
				t.Fatal(err)
			}
		}},
		{"rsa2048", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Rsa <rsa@example.test>", "rsa2048", "sign,cert", "never")
			g.mustRun(nil, "--quick-add-key", fpr, "rsa2048", "encr", "never")
			good(t, g, fpr, "rsa@example.test")
		}},
		{"rsa1024", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Weak <weak@example.test>", "rsa1024", "sign,cert", "never")
			g.mustRun(nil, "--quick-add-key", fpr, "rsa1024", "encr", "never")
			_, err := CheckRecipientKey(g.export(fpr), "weak@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyWeak, "1024-bit RSA")
		}},
		{"dsa+elgamal", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Dsa <dsa@example.test>", "dsa2048", "sign,cert", "never")
			g.mustRun(nil, "--quick-add-key", fpr, "elg2048", "encr", "never")
			_, err := CheckRecipientKey(g.export(fpr), "dsa@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyWeak, "DSA")
		}},
		{"signing only", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Sig <sig@example.test>", "ed25519", "sign", "never")
			_, err := CheckRecipientKey(g.export(fpr), "sig@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyNoEncryption, "no encryption subkey")
		}},
		{"revoked with gpg's revocation certificate", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Rev <rev@example.test>", "future-default", "default", "never")
			cert, err := os.ReadFile(filepath.Join(g.home, "openpgp-revocs.d", fpr+".rev"))
			if err != nil {
				t.Fatal(err)
			}
			// gpg guards the certificate with a leading colon.
			g.mustRun(bytes.ReplaceAll(cert, []byte(":-----BEGIN"), []byte("-----BEGIN")), "--import")
			_, err = CheckRecipientKey(g.export(fpr), "rev@example.test", time.Now())
			refusal(t, err, pcrypto.ErrKeyRevoked, "revoked")
		}},
		{"expiring key", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Exp <exp@example.test>", "future-default", "default", "1d")
			if _, err := CheckRecipientKey(g.export(fpr), "exp@example.test", time.Now()); err != nil {
				t.Fatalf("refused before expiry: %v", err)
			}
			_, err := CheckRecipientKey(g.export(fpr), "exp@example.test", later)
			refusal(t, err, pcrypto.ErrKeyExpired, "expired on")
		}},
		{"expiring encryption subkey", func(t *testing.T, g *gpgHome) {
			fpr := g.genKey("Sub <sub@example.test>", "ed25519", "sign", "never")
			g.mustRun(nil, "--quick-add-key", fpr, "cv25519", "encr", "1d")
			_, err := CheckRecipientKey(g.export(fpr), "sub@example.test", later)
			refusal(t, err, pcrypto.ErrKeyExpired, "encryption subkey expired on")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, newGPG(t))
		})
	}
}
