package pgpmime

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

// FuzzCheckRecipientKey: a patient (or an admin) uploads any bytes as their
// key. CheckRecipientKey either refuses them with a *KeyRefusedError whose
// reason never names the address it was checked for, or returns a public
// key that PGP/MIME can encrypt to (the check and the encryption agree).
// Seeds: real keys below and testdata/fuzz/FuzzCheckRecipientKey.
func FuzzCheckRecipientKey(f *testing.F) {
	alice := testKey(f, "alice")
	pub, err := alice.PublicArmored()
	if err != nil {
		f.Fatal(err)
	}
	priv, err := pcrypto.LockArmored(alice, []byte("pw"))
	if err != nil {
		f.Fatal(err)
	}
	e, err := newEntityErr("bin", entityConfig())
	if err != nil {
		f.Fatal(err)
	}
	var bin bytes.Buffer
	if err := e.Serialize(&bin); err != nil {
		f.Fatal(err)
	}
	f.Add(pub, "alice@example.test")
	f.Add(pub, "")
	f.Add(pub, "bob@example.test")
	f.Add(bin.Bytes(), "Bin <bin@example.test>")
	f.Add(priv, "alice@example.test")
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF\n-----END PGP PUBLIC KEY BLOCK-----\n"), "x@example.test")
	f.Add(append(append([]byte{}, pub...), pub...), "alice@example.test")
	signer := testKey(f, "gateway")
	now := time.Now()
	f.Fuzz(func(t *testing.T, key []byte, addr string) {
		k, err := CheckRecipientKey(key, addr, now)
		if err != nil {
			var kr *pcrypto.KeyRefusedError
			if !errors.As(err, &kr) {
				t.Fatalf("refusal %v is a %T, not a *KeyRefusedError", err, err)
			}
			if a := strings.TrimSpace(addr); strings.Contains(a, "@") && strings.Contains(kr.Reason, a) {
				t.Fatalf("refusal reason names the address %q: %q", a, kr.Reason)
			}
			return
		}
		if k.IsPrivate() {
			t.Fatal("CheckRecipientKey returned a private key")
		}
		if _, err := Encrypt([]byte("Subject: s\r\n\r\nb"), Options{From: "a@clinic.example", To: "p@example.test"},
			signer, k); err != nil {
			t.Fatalf("accepted key cannot be encrypted to: %v", err)
		}
	})
}
