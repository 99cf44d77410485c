package pgpmime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"

	pcrypto "github.com/phigate/phigate/crypto"
)

// ErrNotPGPMIME: the message is not an RFC 3156 multipart/encrypted message.
var ErrNotPGPMIME = errors.New("pgpmime: not a PGP/MIME encrypted message")

// maxPayload bounds the encrypted part we read (the gateway's own message
// size limit is far lower).
const maxPayload = 256 << 20

// Decrypt is the inverse of Encrypt: it decrypts msg with key (private) and
// checks the signature against verifier (public; nil trusts nobody). It
// returns the inner MIME entity (the protected headers and the original
// body) and the signature status; see crypto.Open for what is an error and
// what is a status.
func Decrypt(msg []byte, key, verifier *pcrypto.Key) ([]byte, pcrypto.SignatureStatus, error) {
	payload, err := EncryptedPayload(msg)
	if err != nil {
		return nil, 0, err
	}
	s, err := pcrypto.ParseSealed(payload)
	if err != nil {
		return nil, 0, fmt.Errorf("pgpmime: %w", err)
	}
	inner, status, err := pcrypto.Open(s, key, verifier)
	if err != nil {
		return nil, 0, fmt.Errorf("pgpmime: %w", err)
	}
	return inner, status, nil
}

// EncryptedPayload checks the RFC 3156 structure of msg (multipart/encrypted
// with protocol application/pgp-encrypted; first part application/
// pgp-encrypted saying "Version: 1"; second part application/octet-stream)
// and returns the second part's body: the ASCII-armored OpenPGP message.
func EncryptedPayload(msg []byte) ([]byte, error) {
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		return nil, ErrNotPGPMIME
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/encrypted" || !strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
		return nil, ErrNotPGPMIME
	}
	mr := e.MultipartReader()
	if mr == nil {
		return nil, ErrNotPGPMIME
	}
	p1, err := mr.NextPart()
	if err != nil {
		return nil, ErrNotPGPMIME
	}
	if t, _, err := p1.Header.ContentType(); err != nil || t != "application/pgp-encrypted" {
		return nil, ErrNotPGPMIME
	}
	control, err := io.ReadAll(io.LimitReader(p1.Body, 4096))
	if err != nil || !hasVersion1(control) {
		return nil, ErrNotPGPMIME
	}
	p2, err := mr.NextPart()
	if err != nil {
		return nil, ErrNotPGPMIME
	}
	if t, _, err := p2.Header.ContentType(); err != nil || t != "application/octet-stream" {
		return nil, ErrNotPGPMIME
	}
	payload, err := io.ReadAll(io.LimitReader(p2.Body, maxPayload+1))
	if err != nil {
		return nil, ErrNotPGPMIME
	}
	if len(payload) > maxPayload {
		return nil, errors.New("pgpmime: encrypted part too large")
	}
	return payload, nil
}

func hasVersion1(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "Version: 1" {
			return true
		}
	}
	return false
}

// CheckRecipientKey parses a registered OpenPGP public key (armored or
// binary; exactly one key, and no private key material) and refuses it, with
// a plain reason, if it can't safely be used to encrypt mail to address at
// time now: unreadable, revoked, expired, weak (RSA under 2048 bits, DSA,
// ElGamal, legacy algorithms or SHA-1 self-signatures), without an
// encryption-capable subkey, or (if address != "") without a user ID for
// address. Refusals are *crypto.KeyRefusedError; test the kind with
// errors.Is(err, crypto.ErrKeyExpired) etc. The returned key is public only.
func CheckRecipientKey(armored []byte, address string, now time.Time) (*pcrypto.Key, error) {
	if pcrypto.ContainsPrivateKey(armored) {
		return nil, &pcrypto.KeyRefusedError{Kind: pcrypto.ErrKeyInvalid,
			Reason: "this is a private key; send only the public key (and keep the private key secret)"}
	}
	k, err := pcrypto.ReadKey(armored)
	if err != nil {
		return nil, &pcrypto.KeyRefusedError{Kind: pcrypto.ErrKeyInvalid,
			Reason: "this is not a single readable OpenPGP public key (" + err.Error() + ")"}
	}
	if err := k.CheckRecipient(address, now); err != nil {
		return nil, err
	}
	return k.Public(), nil
}
