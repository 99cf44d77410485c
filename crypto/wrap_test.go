package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func TestWrapUnwrap(t *testing.T) {
	kek := RandomBytes(32)
	pt := []byte("-----private key bytes-----")
	aad := []byte("pending-key:user-42")
	w, err := Wrap(kek, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1+12+len(pt)+16 || w[0] != 1 {
		t.Fatalf("layout: len %d version %d", len(w), w[0])
	}
	if bytes.Contains(w, pt[5:15]) {
		t.Fatal("plaintext visible")
	}
	got, err := Unwrap(kek, w, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unwrap: %q %v", got, err)
	}
	w2, _ := Wrap(kek, pt, aad)
	if bytes.Equal(w[1:13], w2[1:13]) {
		t.Fatal("nonce repeated")
	}

	otherKEK := RandomBytes(32)
	if _, err := Unwrap(otherKEK, w, aad); !errors.Is(err, ErrUnwrap) {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := Unwrap(kek, w, []byte("pending-key:user-43")); !errors.Is(err, ErrUnwrap) {
		t.Errorf("wrong aad: %v", err)
	}
	if _, err := Unwrap(kek, w, nil); !errors.Is(err, ErrUnwrap) {
		t.Errorf("missing aad: %v", err)
	}
	for i := range w {
		tm := bytes.Clone(w)
		tm[i] ^= 0x80
		if _, err := Unwrap(kek, tm, aad); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("tamper at %d: %v", i, err)
		}
	}
	for _, n := range []int{0, 1, 13, 28, len(w) - 1} {
		if _, err := Unwrap(kek, w[:n], aad); !errors.Is(err, ErrUnwrap) {
			t.Errorf("truncated to %d: %v", n, err)
		}
	}
	if _, err := Unwrap(kek[:16], w, aad); !errors.Is(err, ErrUnwrap) {
		t.Errorf("short kek: %v", err)
	}
	if _, err := Wrap(kek[:16], pt, aad); err == nil {
		t.Error("Wrap accepted a 16-byte kek")
	}
	// Empty plaintext still authenticates.
	we, _ := Wrap(kek, nil, aad)
	if got, err := Unwrap(kek, we, aad); err != nil || len(got) != 0 {
		t.Errorf("empty: %q %v", got, err)
	}
}

func TestRandomBytes(t *testing.T) {
	a, b := RandomBytes(32), RandomBytes(32)
	if len(a) != 32 || bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 32)) {
		t.Fatal("RandomBytes not random")
	}
	if len(RandomBytes(0)) != 0 {
		t.Fatal("RandomBytes(0)")
	}
}

func TestMAC(t *testing.T) {
	// RFC 4231 test case 2.
	got := MAC([]byte("Jefe"), []byte("what do ya want for nothing?"))
	want := "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if hex.EncodeToString(got) != want {
		t.Fatalf("MAC = %x", got)
	}
	if bytes.Equal(MAC([]byte("k1"), []byte("m")), MAC([]byte("k2"), []byte("m"))) {
		t.Fatal("MAC ignores key")
	}
}
