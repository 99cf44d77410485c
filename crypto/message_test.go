package crypto

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestSealOpenRoundTrip(t *testing.T) {
	signer, alice, escrow := testKey(t, "gateway"), testKey(t, "alice"), testKey(t, "escrow")
	pt := bytes.Repeat([]byte("PHI canary 7f3a9 "), 1200) // ~20 KB
	s, err := Seal(pt, signer, alice.Public(), escrow.Public())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.Data, []byte("canary")) || bytes.Contains(s.KeyPackets, []byte("canary")) {
		t.Fatal("plaintext visible in ciphertext")
	}
	pk := splitPackets(t, s.KeyPackets)
	if len(pk) != 2 || !pk[0].pkesk || !pk[1].pkesk {
		t.Fatalf("key packets: %d, want 2 PKESKs", len(pk))
	}
	// SEIPD v1 (tag 18, version 1) for GnuPG 2.2; no compression means the
	// data packet is barely larger than the plaintext.
	p, err := packet.Read(bytes.NewReader(s.Data))
	if err != nil {
		t.Fatal(err)
	}
	se, ok := p.(*packet.SymmetricallyEncrypted)
	if !ok || !se.IntegrityProtected || se.Version != 1 {
		t.Fatalf("data packet %T %+v, want SEIPD v1", p, p)
	}
	if len(s.Data) < len(pt) || len(s.Data) > len(pt)+1024 {
		t.Fatalf("data packet %d bytes for %d plaintext", len(s.Data), len(pt))
	}

	for _, k := range []*Key{alice, escrow} {
		got, st, err := Open(s, k, signer.Public())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) || st != SigVerified {
			t.Fatalf("Open: %d bytes, status %v", len(got), st)
		}
	}

	// Whole-message forms parse back into the same parts.
	whole := s.Bytes()
	if !bytes.Equal(whole, append(append([]byte{}, s.KeyPackets...), s.Data...)) {
		t.Fatal("Bytes() is not KeyPackets||Data")
	}
	arm, err := s.Armor()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(arm, []byte("-----BEGIN PGP MESSAGE-----")) {
		t.Fatalf("armor header %.30q", arm)
	}
	for _, in := range [][]byte{whole, arm} {
		s2, err := ParseSealed(in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s2.KeyPackets, s.KeyPackets) || !bytes.Equal(s2.Data, s.Data) {
			t.Fatal("ParseSealed parts differ")
		}
	}
	// And the whole message reads with go-crypto's plain reader too.
	md, err := openpgp.ReadMessage(bytes.NewReader(whole), openpgp.EntityList{alice.e, signer.e}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(md.UnverifiedBody); err != nil || md.SignatureError != nil || !bytes.Equal(buf.Bytes(), pt) {
		t.Fatalf("plain ReadMessage: %v / %v", err, md.SignatureError)
	}
}

func TestSealEmptyAndErrors(t *testing.T) {
	signer, alice := testKey(t, "gateway"), testKey(t, "alice")
	s := mustSeal(t, nil, signer, alice.Public())
	got, st, err := Open(s, alice, signer)
	if err != nil || len(got) != 0 || st != SigVerified {
		t.Fatalf("empty message: %q %v %v", got, st, err)
	}
	if _, err := Seal([]byte("x"), signer); err == nil {
		t.Fatal("Seal with no recipients succeeded")
	}
	if _, err := Seal([]byte("x"), signer.Public(), alice); err == nil {
		t.Fatal("Seal with public-only signer succeeded")
	}
}

func TestOpenNotRecipient(t *testing.T) {
	signer, alice, mallory := testKey(t, "gateway"), testKey(t, "alice"), testKey(t, "mallory")
	s := mustSeal(t, []byte("secret"), signer, alice.Public())
	got, _, err := Open(s, mallory, signer)
	if !errors.Is(err, ErrNotRecipient) || got != nil {
		t.Fatalf("non-recipient: %q %v", got, err)
	}
	// The signer is not a recipient either, though it has a private key.
	if _, _, err := Open(s, signer, signer); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("signer as reader: %v", err)
	}
}

func TestOpenTamperedFails(t *testing.T) {
	signer, alice := testKey(t, "gateway"), testKey(t, "alice")
	pt := bytes.Repeat([]byte("integrity "), 2000)
	s := mustSeal(t, pt, signer, alice.Public())
	// Header, first block (quick check), middle of the body, signature area, MDC.
	positions := []int{0, 1, 3, 10, 20, len(s.Data) / 3, len(s.Data) / 2, len(s.Data) - 200, len(s.Data) - 60, len(s.Data) - 1}
	for _, pos := range positions {
		d := bytes.Clone(s.Data)
		d[pos] ^= 0x01
		got, st, err := Open(&Sealed{KeyPackets: s.KeyPackets, Data: d}, alice, signer)
		if err == nil {
			t.Errorf("flip at %d/%d: no error (status %v, %d bytes)", pos, len(d), st, len(got))
		}
	}
	// Truncation is an error too.
	if _, _, err := Open(&Sealed{KeyPackets: s.KeyPackets, Data: s.Data[:len(s.Data)-30]}, alice, signer); err == nil {
		t.Error("truncated data: no error")
	}
	// A damaged PKESK cannot yield the session key.
	kp := bytes.Clone(s.KeyPackets)
	kp[len(kp)-5] ^= 0x40
	if _, _, err := Open(&Sealed{KeyPackets: kp, Data: s.Data}, alice, signer); err == nil {
		t.Error("damaged PKESK: no error")
	}
}

func TestSignatureStatuses(t *testing.T) {
	gw, other, alice := testKey(t, "gateway"), testKey(t, "other"), testKey(t, "alice")
	pt := []byte("status check")
	cases := []struct {
		name     string
		signer   *Key
		verifier *Key
		want     SignatureStatus
	}{
		{"verified", gw, gw.Public(), SigVerified},
		{"other signer", other, gw.Public(), SigUnknownSigner},
		{"no verifier", gw, nil, SigUnknownSigner},
		// The reader's own key is in the decryption ring but must not count
		// as the verifier.
		{"signed by reader", alice, gw.Public(), SigUnknownSigner},
		{"unsigned", nil, gw.Public(), SigUnsigned},
	}
	for _, c := range cases {
		got, st, err := Open(mustSeal(t, pt, c.signer, alice.Public()), alice, c.verifier)
		if err != nil || !bytes.Equal(got, pt) || st != c.want {
			t.Errorf("%s: %q %v %v, want status %v", c.name, got, st, err, c.want)
		}
	}
	for s, want := range map[SignatureStatus]string{SigVerified: "verified", SigUnsigned: "unsigned", SigUnknownSigner: "unknown-signer", SigInvalid: "invalid"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q", int(s), s.String())
		}
	}
}

// TestSignatureInvalid builds a message whose MDC is intact but whose signed
// content was altered before encryption (as someone holding the session key
// could do): Open must return the body with SigInvalid, not an error.
func TestSignatureInvalid(t *testing.T) {
	gw, alice := testKey(t, "gateway"), testKey(t, "alice")
	pt := []byte("pay 100 dollars to clinic")
	var signed bytes.Buffer
	w, err := openpgp.Sign(&signed, gw.e, &openpgp.FileHints{IsBinary: true}, sealConfig)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(pt)
	w.Close()
	i := bytes.Index(signed.Bytes(), []byte("100"))
	if i < 0 {
		t.Fatal("literal not found")
	}
	tampered := bytes.Clone(signed.Bytes())
	tampered[i] = '9'

	sk := RandomBytes(32)
	encKey, _ := alice.e.EncryptionKey(time.Now())
	var kp, data bytes.Buffer
	if err := packet.SerializeEncryptedKeyAEAD(&kp, encKey.PublicKey, packet.CipherAES256, false, sk, nil); err != nil {
		t.Fatal(err)
	}
	dw, err := packet.SerializeSymmetricallyEncrypted(&data, packet.CipherAES256, false, packet.CipherSuite{}, sk, nil)
	if err != nil {
		t.Fatal(err)
	}
	dw.Write(tampered)
	dw.Close()

	got, st, err := Open(&Sealed{KeyPackets: kp.Bytes(), Data: data.Bytes()}, alice, gw)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if st != SigInvalid || string(got) != "pay 900 dollars to clinic" {
		t.Fatalf("got %q %v, want tampered body with SigInvalid", got, st)
	}

	// Control: the same construction without tampering verifies.
	data.Reset()
	kp2 := kp.Bytes()
	dw, _ = packet.SerializeSymmetricallyEncrypted(&data, packet.CipherAES256, false, packet.CipherSuite{}, sk, nil)
	dw.Write(signed.Bytes())
	dw.Close()
	if got, st, err := Open(&Sealed{KeyPackets: kp2, Data: data.Bytes()}, alice, gw); err != nil || st != SigVerified || !bytes.Equal(got, pt) {
		t.Fatalf("control: %q %v %v", got, st, err)
	}
}

func TestRewrap(t *testing.T) {
	gw, escrow := testKey(t, "gateway"), testKey(t, "escrow")
	pending, user := freshKey(t, "pending"), freshKey(t, "user")
	pt := bytes.Repeat([]byte("lab results "), 500)
	s := mustSeal(t, pt, gw, pending.Public(), escrow.Public())
	origKP := bytes.Clone(s.KeyPackets)
	origData := bytes.Clone(s.Data)
	escrowPKESK := bytes.Clone(findPKESK(t, s.KeyPackets, escrow))
	pendingPKESK := findPKESK(t, s.KeyPackets, pending)
	if escrowPKESK == nil || pendingPKESK == nil {
		t.Fatal("PKESKs not found before rewrap")
	}

	newKP, err := Rewrap(s.KeyPackets, pending, user.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.KeyPackets, origKP) || !bytes.Equal(s.Data, origData) {
		t.Fatal("Rewrap modified its input")
	}
	re := &Sealed{KeyPackets: newKP, Data: s.Data}

	got, st, err := Open(re, user, gw)
	if err != nil || !bytes.Equal(got, pt) || st != SigVerified {
		t.Fatalf("new key: %v %v", st, err)
	}
	if _, _, err := Open(re, pending, gw); !errors.Is(err, ErrNotRecipient) {
		t.Fatalf("old key still opens: %v", err)
	}
	if got, st, err := Open(re, escrow, gw); err != nil || !bytes.Equal(got, pt) || st != SigVerified {
		t.Fatalf("escrow: %v %v", st, err)
	}
	if e := findPKESK(t, newKP, escrow); !bytes.Equal(e, escrowPKESK) {
		t.Fatal("escrow PKESK bytes changed")
	}
	if findPKESK(t, newKP, pending) != nil || bytes.Contains(newKP, pendingPKESK) {
		t.Fatal("pending PKESK survived")
	}
	if findPKESK(t, newKP, user) == nil {
		t.Fatal("no PKESK for the new key")
	}
	// Order is kept: the replacement sits where the old one was.
	if pk := splitPackets(t, newKP); len(pk) != 2 || pk[0].keyID != encKeyID(t, user) || !bytes.Equal(pk[1].raw, escrowPKESK) {
		t.Fatal("packet order changed")
	}

	// Second hop: the user's key can be rewrapped again (e.g. by escrow
	// recovery after a lost password), and escrow is still untouched.
	user2 := freshKey(t, "user2")
	kp3, err := Rewrap(newKP, escrow, user2.Public())
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := Open(&Sealed{KeyPackets: kp3, Data: s.Data}, user2, gw); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("rewrap via escrow: %v", err)
	}

	if _, err := Rewrap(s.KeyPackets, testKey(t, "mallory"), user.Public()); !errors.Is(err, ErrNoKeyPacket) {
		t.Fatalf("stranger: %v", err)
	}
	if _, err := Rewrap(s.KeyPackets, pending.Public(), user.Public()); err == nil {
		t.Fatal("Rewrap with public-only from succeeded")
	}
	if _, err := Rewrap(s.KeyPackets[:len(s.KeyPackets)-3], pending, user.Public()); err == nil {
		t.Fatal("Rewrap of truncated packets succeeded")
	}
}

// An unencrypted (signed-only) message must never pass as opened.
func TestOpenRefusesUnencrypted(t *testing.T) {
	gw, alice := testKey(t, "gateway"), testKey(t, "alice")
	var signed bytes.Buffer
	w, err := openpgp.Sign(&signed, gw.e, &openpgp.FileHints{IsBinary: true}, sealConfig)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("plain"))
	w.Close()
	if got, _, err := Open(&Sealed{Data: signed.Bytes()}, alice, gw); err == nil {
		t.Fatalf("opened an unencrypted message: %q", got)
	}
	if _, err := ParseSealed(signed.Bytes()); err == nil {
		t.Fatal("ParseSealed accepted an unencrypted message")
	}
}
