package pgpmime

import (
	"bytes"
	stdcrypto "crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	pcrypto "github.com/phigate/phigate/crypto"
)

// refusal asserts err is a KeyRefusedError of kind whose reason mentions
// want, and that the reason never names the address or the key's user ID.
func refusal(t *testing.T, err error, kind error, want string) {
	t.Helper()
	var kr *pcrypto.KeyRefusedError
	if !errors.As(err, &kr) || !errors.Is(err, kind) {
		t.Fatalf("got %v (%T), want %v", err, err, kind)
	}
	if !strings.Contains(kr.Reason, want) {
		t.Fatalf("reason %q does not mention %q", kr.Reason, want)
	}
	if strings.Contains(kr.Reason, "@") {
		t.Fatalf("reason names an address: %q", kr.Reason)
	}
	t.Logf("refused: %s", kr.Reason)
}

func TestCheckRecipientKeyGood(t *testing.T) {
	k := testKey(t, "alice")
	pub, err := k.PublicArmored()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, addr := range []string{"", "alice@example.test", "ALICE@Example.Test", " alice@example.test ", "Alice <alice@example.test>"} {
		got, err := CheckRecipientKey(pub, addr, now)
		if err != nil {
			t.Fatalf("%q: %v", addr, err)
		}
		if got.IsPrivate() || got.Fingerprint() != k.Fingerprint() {
			t.Fatalf("%q: wrong key returned", addr)
		}
	}
	// Binary form too.
	e := newEntity(t, "bin", entityConfig())
	var bin bytes.Buffer
	if err := e.Serialize(&bin); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckRecipientKey(bin.Bytes(), "bin@example.test", now); err != nil {
		t.Fatal(err)
	}
	// A usable key can be encrypted to (the check and Seal agree).
	rk, _ := CheckRecipientKey(pub, "alice@example.test", now)
	if _, err := Encrypt([]byte("Subject: s\r\n\r\nb"), Options{From: "a@clinic.example", To: "alice@example.test"},
		testKey(t, "gateway"), rk); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRecipientKeyAddressMismatch(t *testing.T) {
	pub, _ := testKey(t, "alice").PublicArmored()
	_, err := CheckRecipientKey(pub, "bob@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyAddress, "user ID")
	// A look-alike is not a match.
	_, err = CheckRecipientKey(pub, "alice@example.test.evil.example", time.Now())
	refusal(t, err, pcrypto.ErrKeyAddress, "user ID")
}

func TestCheckRecipientKeyExpired(t *testing.T) {
	// Made two days ago with a one-hour lifetime.
	cfg := entityConfig()
	created := time.Now().Add(-48 * time.Hour)
	cfg.Time = func() time.Time { return created }
	cfg.KeyLifetimeSecs = 3600
	pub := armorPublic(t, newEntity(t, "expired", cfg))
	_, err := CheckRecipientKey(pub, "expired@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyExpired, "expired on "+created.Add(time.Hour).UTC().Format(time.DateOnly))

	// Valid now, expired when checked after its lifetime.
	cfg = entityConfig()
	cfg.KeyLifetimeSecs = 24 * 3600
	pub = armorPublic(t, newEntity(t, "day", cfg))
	if _, err := CheckRecipientKey(pub, "day@example.test", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = CheckRecipientKey(pub, "day@example.test", time.Now().Add(49*time.Hour))
	refusal(t, err, pcrypto.ErrKeyExpired, "expired")
}

func TestCheckRecipientKeyRevoked(t *testing.T) {
	e := newEntity(t, "revoked", entityConfig())
	if err := e.RevokeKey(packet.KeyCompromised, "laptop stolen", nil); err != nil {
		t.Fatal(err)
	}
	_, err := CheckRecipientKey(armorPublic(t, e), "revoked@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyRevoked, "compromised")

	// Only the encryption subkey revoked.
	e = newEntity(t, "subrev", entityConfig())
	if err := e.RevokeSubkey(&e.Subkeys[0], packet.KeySuperseded, "", nil); err != nil {
		t.Fatal(err)
	}
	_, err = CheckRecipientKey(armorPublic(t, e), "subrev@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyRevoked, "subkey has been revoked")
}

func TestCheckRecipientKeyWeak(t *testing.T) {
	cfg := entityConfig()
	cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 1024
	_, err := CheckRecipientKey(armorPublic(t, newEntity(t, "rsa1024", cfg)), "rsa1024@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyWeak, "1024-bit RSA")

	cfg = entityConfig()
	cfg.Algorithm, cfg.RSABits = packet.PubKeyAlgoRSA, 2048
	if _, err := CheckRecipientKey(armorPublic(t, newEntity(t, "rsa2048", cfg)), "rsa2048@example.test", time.Now()); err != nil {
		t.Fatalf("RSA-2048 refused: %v", err)
	}

	// go-crypto won't make SHA-1 self-signatures: re-sign the user ID.
	e := newEntity(t, "sha1", entityConfig())
	noSalt := false // the salt notation needs a SHA-2 hash
	for name, id := range e.Identities {
		sig := *id.SelfSignature
		sig.Hash = stdcrypto.SHA1
		sig.Notations = nil
		if err := sig.SignUserId(name, e.PrimaryKey, e.PrivateKey, &packet.Config{NonDeterministicSignaturesViaNotation: &noSalt}); err != nil {
			t.Fatal(err)
		}
		id.SelfSignature, id.Signatures = &sig, []*packet.Signature{&sig}
	}
	_, err = CheckRecipientKey(armorPublic(t, e), "sha1@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyWeak, "SHA-1")

	cfg = entityConfig()
	cfg.Algorithm, cfg.Curve = packet.PubKeyAlgoECDSA, packet.CurveSecP256k1
	if e, err := newEntityErr("k1", cfg); err == nil {
		_, err = CheckRecipientKey(armorPublic(t, e), "k1@example.test", time.Now())
		refusal(t, err, pcrypto.ErrKeyWeak, "SecP256k1")
	} else {
		t.Fatalf("making the secp256k1 key to refuse: %v", err)
	}

	cfg = entityConfig()
	cfg.Algorithm, cfg.Curve = packet.PubKeyAlgoECDSA, packet.CurveNistP256
	if _, err := CheckRecipientKey(armorPublic(t, newEntity(t, "p256", cfg)), "p256@example.test", time.Now()); err != nil {
		t.Fatalf("P-256 refused: %v", err)
	}
}

func TestCheckRecipientKeySigningOnly(t *testing.T) {
	e := newEntity(t, "signonly", entityConfig())
	e.Subkeys = nil
	_, err := CheckRecipientKey(armorPublic(t, e), "signonly@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyNoEncryption, "no encryption subkey")
}

func TestCheckRecipientKeyBadInput(t *testing.T) {
	priv, err := testKey(t, "alice").PrivateBytes()
	if err != nil {
		t.Fatal(err)
	}
	_, err = CheckRecipientKey(priv, "alice@example.test", time.Now())
	refusal(t, err, pcrypto.ErrKeyInvalid, "private key")

	_, err = CheckRecipientKey([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64!\n-----END PGP PUBLIC KEY BLOCK-----\n"), "", time.Now())
	refusal(t, err, pcrypto.ErrKeyInvalid, "readable")

	_, err = CheckRecipientKey([]byte("hello"), "", time.Now())
	refusal(t, err, pcrypto.ErrKeyInvalid, "readable")

	// Two keys in one block.
	var two bytes.Buffer
	for _, n := range []string{"one", "two"} {
		if err := newEntity(t, n, entityConfig()).Serialize(&two); err != nil {
			t.Fatal(err)
		}
	}
	_, err = CheckRecipientKey(two.Bytes(), "", time.Now())
	refusal(t, err, pcrypto.ErrKeyInvalid, "single")

	// Created in the future (a wrong clock).
	cfg := entityConfig()
	cfg.Time = func() time.Time { return time.Now().Add(72 * time.Hour) }
	_, err = CheckRecipientKey(armorPublic(t, newEntity(t, "future", cfg)), "", time.Now())
	refusal(t, err, pcrypto.ErrKeyInvalid, "future")
}
