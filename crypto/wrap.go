package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
)

const (
	wrapVersion1 = 1
	wrapNonceLen = 12
	// KEKSize is the key size Wrap and Unwrap require (AES-256).
	KEKSize = 32
)

// Wrap seals plaintext under kek with AES-256-GCM:
// version(1) || nonce(12) || ciphertext+tag. The version byte is part of the
// AAD so it cannot be swapped; aad binds the blob to its purpose/owner.
func Wrap(kek, plaintext, aad []byte) ([]byte, error) {
	g, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+wrapNonceLen, 1+wrapNonceLen+len(plaintext)+g.Overhead())
	out[0] = wrapVersion1
	// Random nonces are safe here: each kek wraps far fewer than 2^32 blobs.
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return g.Seal(out, out[1:1+wrapNonceLen], plaintext, wrapAAD(out[0], aad)), nil
}

// Unwrap reverses Wrap. Any failure (wrong key, tamper, wrong aad, unknown
// version, short input) is ErrUnwrap.
func Unwrap(kek, wrapped, aad []byte) ([]byte, error) {
	g, err := newGCM(kek)
	if err != nil {
		return nil, ErrUnwrap
	}
	if len(wrapped) < 1+wrapNonceLen+g.Overhead() || wrapped[0] != wrapVersion1 {
		return nil, ErrUnwrap
	}
	pt, err := g.Open(nil, wrapped[1:1+wrapNonceLen], wrapped[1+wrapNonceLen:], wrapAAD(wrapped[0], aad))
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, errors.New("crypto: kek must be 32 bytes")
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func wrapAAD(version byte, aad []byte) []byte {
	a := make([]byte, 0, 1+len(aad))
	a = append(a, version)
	return append(a, aad...)
}

// RandomBytes returns n bytes from crypto/rand; it panics only if the OS RNG
// fails (crypto/rand itself crashes the program in that case since Go 1.24).
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto: OS random number generator failed: " + err.Error())
	}
	return b
}

// MAC is HMAC-SHA256, used for generated app passwords (long random secrets,
// so a fast keyed hash is enough).
func MAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
