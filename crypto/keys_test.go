package crypto

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestGenerateKeyIsV4Curve25519(t *testing.T) {
	k := freshKey(t, "alice")
	pk := k.e.PrimaryKey
	if pk.Version != 4 || pk.PubKeyAlgo != packet.PubKeyAlgoEdDSA {
		t.Fatalf("primary: version %d algo %d, want v4 EdDSA", pk.Version, pk.PubKeyAlgo)
	}
	if c, _ := pk.Curve(); c != packet.Curve25519 {
		t.Fatalf("primary curve %q", c)
	}
	if len(k.e.Subkeys) != 1 {
		t.Fatalf("%d subkeys, want 1", len(k.e.Subkeys))
	}
	sk := k.e.Subkeys[0]
	if sk.PublicKey.Version != 4 || sk.PublicKey.PubKeyAlgo != packet.PubKeyAlgoECDH {
		t.Fatalf("subkey: version %d algo %d, want v4 ECDH", sk.PublicKey.Version, sk.PublicKey.PubKeyAlgo)
	}
	if c, _ := sk.PublicKey.Curve(); c != packet.Curve25519 {
		t.Fatalf("subkey curve %q", c)
	}
	if !sk.Sig.FlagEncryptCommunications || !sk.Sig.FlagEncryptStorage {
		t.Fatal("subkey not flagged for encryption")
	}
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(k.Fingerprint()) {
		t.Fatalf("fingerprint %q", k.Fingerprint())
	}
	if !k.IsPrivate() {
		t.Fatal("generated key not private")
	}
	if id := k.e.PrimaryIdentity(); id == nil || id.Name != "alice <alice@example.test>" {
		t.Fatalf("identity %+v", id)
	}
}

func TestReadKeyRoundTrips(t *testing.T) {
	k := testKey(t, "alice")
	pubArm, err := k.PublicArmored()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pubArm, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		t.Fatalf("public armor header: %.40q", pubArm)
	}
	pub, err := ReadKey(pubArm)
	if err != nil {
		t.Fatal(err)
	}
	if pub.IsPrivate() || pub.Fingerprint() != k.Fingerprint() {
		t.Fatalf("public: private=%v fpr=%s", pub.IsPrivate(), pub.Fingerprint())
	}
	if _, err := pub.PrivateBytes(); err == nil {
		t.Fatal("PrivateBytes on public key succeeded")
	}

	privBin, err := k.PrivateBytes()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ReadKey(privBin)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.IsPrivate() || priv.Fingerprint() != k.Fingerprint() {
		t.Fatal("private binary round trip lost private part or fingerprint")
	}
	// Armored private input works too.
	var arm bytes.Buffer
	w, _ := armor.Encode(&arm, openpgp.PrivateKeyType, nil)
	w.Write(privBin)
	w.Close()
	priv2, err := ReadKey(arm.Bytes())
	if err != nil || !priv2.IsPrivate() {
		t.Fatalf("armored private: %v", err)
	}

	// The re-read private key really decrypts what was sealed to the public one.
	s, err := Seal([]byte("round trip"), k, pub)
	if err != nil {
		t.Fatal(err)
	}
	got, st, err := Open(s, priv, pub)
	if err != nil || string(got) != "round trip" || st != SigVerified {
		t.Fatalf("open with re-read key: %q %v %v", got, st, err)
	}
}

func TestReadKeyRejects(t *testing.T) {
	a, b := testKey(t, "alice"), testKey(t, "bob")
	var two bytes.Buffer
	a.e.Serialize(&two)
	b.e.Serialize(&two)
	for name, in := range map[string][]byte{
		"garbage":  []byte("not a key"),
		"empty":    nil,
		"two keys": two.Bytes(),
		"message":  mustSeal(t, []byte("x"), a, b).Bytes(),
	} {
		if _, err := ReadKey(in); err == nil {
			t.Errorf("%s: ReadKey succeeded", name)
		}
	}
}

func mustSeal(t testing.TB, pt []byte, signer *Key, rcpts ...*Key) *Sealed {
	t.Helper()
	s, err := Seal(pt, signer, rcpts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPublicDropsPrivatePart(t *testing.T) {
	k := freshKey(t, "carol")
	p := k.Public()
	if p.IsPrivate() {
		t.Fatal("Public() is private")
	}
	if !k.IsPrivate() {
		t.Fatal("Public() stripped the original")
	}
	for _, sk := range p.e.Subkeys {
		if sk.PrivateKey != nil {
			t.Fatal("subkey private part survived Public()")
		}
	}
	if p.Fingerprint() != k.Fingerprint() {
		t.Fatal("fingerprint changed")
	}
	pubBytes, _ := p.PublicArmored()
	if ContainsPrivateKey(pubBytes) {
		t.Fatal("Public().PublicArmored holds private material")
	}
	if _, _, err := Open(mustSeal(t, []byte("x"), k, p), p, p); err == nil {
		t.Fatal("Open with a public-only key succeeded")
	}
}

func TestLockUnlock(t *testing.T) {
	k := testKey(t, "escrow")
	pass := []byte("correct horse battery staple")
	for name, lock := range map[string]func(*Key, []byte) ([]byte, error){
		"argon2": LockArmored,
		"compat": LockArmoredCompat,
	} {
		t.Run(name, func(t *testing.T) {
			locked, err := lock(k, pass)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(locked, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
				t.Fatalf("locked armor header: %.40q", locked)
			}
			if !ContainsPrivateKey(locked) {
				t.Fatal("ContainsPrivateKey(locked) = false")
			}
			if !k.IsPrivate() || isLocked(k.e) {
				t.Fatal("locking changed the original key")
			}
			if _, err := ReadKey(locked); err == nil {
				t.Fatal("ReadKey accepted a locked key")
			}
			if _, err := UnlockArmored(locked, []byte("wrong horse")); !errors.Is(err, ErrBadPassphrase) {
				t.Fatalf("wrong passphrase: %v", err)
			}
			u, err := UnlockArmored(locked, pass)
			if err != nil {
				t.Fatal(err)
			}
			if !u.IsPrivate() || u.Fingerprint() != k.Fingerprint() {
				t.Fatal("unlocked key differs")
			}
			got, _, err := Open(mustSeal(t, []byte("escrowed"), nil, k.Public()), u, nil)
			if err != nil || string(got) != "escrowed" {
				t.Fatalf("unlocked key cannot open: %q %v", got, err)
			}
		})
	}
	// An unprotected private key is refused rather than "unlocked" with anything.
	raw, _ := k.PrivateBytes()
	if _, err := UnlockArmored(raw, pass); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("unprotected key: %v", err)
	}
	pub, _ := k.PublicArmored()
	if _, err := UnlockArmored(pub, pass); err == nil {
		t.Fatal("UnlockArmored accepted a public key")
	}
	if _, err := LockArmored(k.Public(), pass); err == nil {
		t.Fatal("LockArmored accepted a public key")
	}
}

func TestLockArmoredUsesArgon2AEAD(t *testing.T) {
	locked, err := LockArmored(testKey(t, "escrow"), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := dearmor(locked, openpgp.PrivateKeyType)
	if err != nil {
		t.Fatal(err)
	}
	// Secret key packet: ... S2K usage 253 (AEAD), cipher 9 (AES-256),
	// AEAD mode 2 (OCB), S2K specifier 4 (Argon2). Find that run of octets.
	if !bytes.Contains(body, []byte{253, 9, 2, 4}) && !bytes.Contains(body, []byte{253, 9, 2, 20, 4}) {
		t.Fatal("locked key does not use AEAD + Argon2 S2K")
	}
}

func TestContainsPrivateKey(t *testing.T) {
	k := testKey(t, "alice")
	privBin, _ := k.PrivateBytes()
	pubArm, _ := k.PublicArmored()
	var pubBin bytes.Buffer
	k.e.Serialize(&pubBin)

	mislabelled := func(body []byte) []byte {
		var b bytes.Buffer
		w, _ := armor.Encode(&b, openpgp.PublicKeyType, nil)
		w.Write(body)
		w.Close()
		return b.Bytes()
	}
	cases := []struct {
		name string
		in   []byte
		want bool
	}{
		{"private binary", privBin, true},
		{"private armored", func() []byte {
			var b bytes.Buffer
			w, _ := armor.Encode(&b, openpgp.PrivateKeyType, nil)
			w.Write(privBin)
			w.Close()
			return b.Bytes()
		}(), true},
		{"private labelled as public", mislabelled(privBin), true},
		{"public then private block", append(append(append([]byte{}, pubArm...), '\n'), mislabelled(privBin)...), true},
		{"public armored", pubArm, false},
		{"public binary", pubBin.Bytes(), false},
		{"message", mustSeal(t, []byte("hi"), k, k).Bytes(), false},
		{"garbage", []byte(strings.Repeat("garbage", 10)), false},
		// A cut-off key file still holds secret material: count it.
		{"truncated private binary", privBin[:len(privBin)/3], true},
		{"empty", nil, false},
	}
	for _, c := range cases {
		if got := ContainsPrivateKey(c.in); got != c.want {
			t.Errorf("%s: got %v want %v", c.name, got, c.want)
		}
	}
}
