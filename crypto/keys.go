// Package crypto holds phigate's cryptography: OpenPGP keys and messages
// (go-crypto), AEAD wrapping of server-held secrets (AES-256-GCM) and password
// derivation (Argon2id + HKDF). It implements no primitives itself.
package crypto

import (
	"bytes"
	"context"
	stdcrypto "crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
)

var (
	ErrBadPassphrase = errors.New("crypto: wrong passphrase")
	ErrNoKeyPacket   = errors.New("crypto: no key packet for this key")
	ErrUnwrap        = errors.New("crypto: cannot unwrap secret")
	// ErrNotLocked is returned by UnlockArmored for a key that carries no
	// passphrase protection, so a misconfigured unprotected escrow key is
	// noticed instead of being accepted with any passphrase.
	ErrNotLocked = errors.New("crypto: private key is not passphrase-protected")
	// ErrNotRecipient is returned by Open when the key has no PKESK in the message.
	ErrNotRecipient = errors.New("crypto: key is not a recipient of this message")
)

// Key is an OpenPGP key: public only, or public + unlocked private.
// earlier holds older keys that also verify signatures (WithEarlier).
type Key struct {
	e       *openpgp.Entity
	earlier openpgp.EntityList
}

type KeyOptions struct{ Name, Email string }

// keyGenConfig: v4 legacy EdDSA + ECDH cv25519, the Curve25519 flavour that
// GnuPG 2.2 understands (RFC 9580 Ed25519/X25519 algorithm ids are not).
// No AEADConfig, so keys do not advertise SEIPDv2 (gpg 2.2 can't read it).
func keyGenConfig() *packet.Config {
	return &packet.Config{
		Algorithm:              packet.PubKeyAlgoEdDSA,
		Curve:                  packet.Curve25519,
		DefaultHash:            stdcrypto.SHA256,
		DefaultCipher:          packet.CipherAES256,
		DefaultCompressionAlgo: packet.CompressionNone,
	}
}

// GenerateKey makes a v4 Curve25519 key (Ed25519 primary for signing + X25519
// encryption subkey) so GnuPG 2.2+ can use it.
func GenerateKey(opts KeyOptions) (*Key, error) {
	e, err := openpgp.NewEntity(opts.Name, "", opts.Email, keyGenConfig())
	if err != nil {
		return nil, fmt.Errorf("crypto: generate key: %w", err)
	}
	return &Key{e: e}, nil
}

// ReadKey parses armored or binary data, public or (unlocked) private key.
// Exactly one key must be present; a passphrase-locked key is refused (use
// UnlockArmored).
func ReadKey(data []byte) (*Key, error) {
	e, err := readOneEntity(data)
	if err != nil {
		return nil, err
	}
	if isLocked(e) {
		return nil, errors.New("crypto: private key is locked; use UnlockArmored")
	}
	return &Key{e: e}, nil
}

func readOneEntity(data []byte) (*openpgp.Entity, error) {
	body, err := dearmor(data, openpgp.PublicKeyType, openpgp.PrivateKeyType)
	if err != nil {
		return nil, err
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("crypto: read key: %w", err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("crypto: read key: want 1 key, found %d", len(el))
	}
	return el[0], nil
}

// dearmor returns the binary body of data; if data is armored, its block
// type must be one of types.
func dearmor(data []byte, types ...string) ([]byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP ")) {
		return data, nil
	}
	block, err := armor.Decode(bytes.NewReader(trimmed))
	if err != nil {
		return nil, fmt.Errorf("crypto: armor: %w", err)
	}
	ok := false
	for _, t := range types {
		ok = ok || block.Type == t
	}
	if !ok {
		return nil, fmt.Errorf("crypto: armor: unexpected block type %q", block.Type)
	}
	body, err := io.ReadAll(block.Body)
	if err != nil {
		return nil, fmt.Errorf("crypto: armor: %w", err)
	}
	return body, nil
}

func isLocked(e *openpgp.Entity) bool {
	if e.PrivateKey != nil && e.PrivateKey.Encrypted {
		return true
	}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

func (k *Key) PublicArmored() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := k.e.Serialize(w); err != nil {
		return nil, fmt.Errorf("crypto: serialize public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PrivateBytes returns the unlocked private key in binary OpenPGP form
// (callers wrap it with Wrap before storing it anywhere).
func (k *Key) PrivateBytes() ([]byte, error) {
	if err := k.checkFullPrivate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	// WithoutSigning: keep the existing self-signatures byte-for-byte.
	if err := k.e.SerializePrivateWithoutSigning(&buf, nil); err != nil {
		return nil, fmt.Errorf("crypto: serialize private key: %w", err)
	}
	return buf.Bytes(), nil
}

// checkFullPrivate guards SerializePrivate*, which panics on a subkey
// without a private part.
func (k *Key) checkFullPrivate() error {
	if !k.IsPrivate() {
		return errors.New("crypto: not a private key")
	}
	for _, sk := range k.e.Subkeys {
		if sk.PrivateKey == nil {
			return errors.New("crypto: private key has a public-only subkey")
		}
	}
	return nil
}

// Public returns a copy without the private part. Packets are shared, which
// is safe because nothing in this package mutates a Key after creation.
func (k *Key) Public() *Key {
	src := k.e
	e := &openpgp.Entity{
		PrimaryKey:    src.PrimaryKey,
		Identities:    make(map[string]*openpgp.Identity, len(src.Identities)),
		Revocations:   src.Revocations,
		SelfSignature: src.SelfSignature,
		Signatures:    src.Signatures,
		Subkeys:       make([]openpgp.Subkey, len(src.Subkeys)),
	}
	for n, id := range src.Identities {
		e.Identities[n] = id
	}
	for i, sk := range src.Subkeys {
		sk.PrivateKey = nil
		e.Subkeys[i] = sk
	}
	return &Key{e: e}
}

func (k *Key) IsPrivate() bool { return k != nil && k.e.PrivateKey != nil }

// Fingerprint is the lowercase hex of the primary key fingerprint.
func (k *Key) Fingerprint() string { return hex.EncodeToString(k.e.PrimaryKey.Fingerprint) }

// lockConfig: Argon2id S2K, which RFC 9580 allows only with AEAD key
// protection (S2K usage 253). GnuPG 2.2 cannot import that; see
// LockArmoredCompat.
func lockConfig() *packet.Config {
	return &packet.Config{
		DefaultCipher: packet.CipherAES256,
		S2KConfig: &s2k.Config{
			S2KMode: s2k.Argon2S2K,
			Argon2Config: &s2k.Argon2Config{
				NumberOfPasses:      3,
				DegreeOfParallelism: 4,
				Memory:              64 * 1024,
			},
		},
		AEADConfig: &packet.AEADConfig{DefaultMode: packet.AEADModeOCB},
	}
}

// compatLockConfig: iterated+salted SHA-256 S2K with the maximum count and
// SHA-1 checksummed CFB protection, readable by GnuPG 2.2.
func compatLockConfig() *packet.Config {
	return &packet.Config{
		DefaultCipher: packet.CipherAES256,
		S2KConfig: &s2k.Config{
			S2KMode:  s2k.IteratedSaltedS2K,
			Hash:     stdcrypto.SHA256,
			S2KCount: 65011712,
		},
	}
}

// LockArmored returns the armored private key protected by passphrase with
// Argon2id S2K (64 MiB, t=3, p=4) and AEAD (OCB) key protection.
func LockArmored(k *Key, passphrase []byte) ([]byte, error) {
	return lockArmored(k, passphrase, lockConfig())
}

// LockArmoredCompat is LockArmored with iterated+salted S2K, for a key that
// must be imported into GnuPG 2.2 (e.g. the escrow key for break-glass use
// with gpg). UnlockArmored reads both forms.
func LockArmoredCompat(k *Key, passphrase []byte) ([]byte, error) {
	return lockArmored(k, passphrase, compatLockConfig())
}

func lockArmored(k *Key, passphrase []byte, cfg *packet.Config) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("crypto: empty passphrase")
	}
	raw, err := k.PrivateBytes()
	if err != nil {
		return nil, err
	}
	// Work on a parsed copy so k stays unlocked.
	cp, err := readOneEntity(raw)
	if err != nil {
		return nil, err
	}
	if err := withHashSlot(context.Background(), func() error {
		return cp.EncryptPrivateKeys(passphrase, cfg)
	}); err != nil {
		return nil, fmt.Errorf("crypto: lock key: %w", err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := cp.SerializePrivateWithoutSigning(w, nil); err != nil {
		return nil, fmt.Errorf("crypto: serialize locked key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// UnlockArmored reverses LockArmored (or LockArmoredCompat). A wrong
// passphrase returns ErrBadPassphrase. The S2K parameters come from the key
// itself, so only feed it trusted input (an Argon2 S2K may ask for up to 2 TiB).
func UnlockArmored(armored, passphrase []byte) (*Key, error) {
	e, err := readOneEntity(armored)
	if err != nil {
		return nil, err
	}
	if e.PrivateKey == nil {
		return nil, errors.New("crypto: not a private key")
	}
	if !isLocked(e) {
		return nil, ErrNotLocked
	}
	err = withHashSlot(context.Background(), func() error {
		return e.DecryptPrivateKeys(passphrase)
	})
	if err != nil {
		// AEAD tag or SHA-1 checksum failure: indistinguishable from a wrong
		// passphrase by design.
		return nil, ErrBadPassphrase
	}
	if isLocked(e) {
		return nil, ErrBadPassphrase
	}
	return &Key{e: e}, nil
}

// ContainsPrivateKey reports whether data (armored or binary) holds any
// private key material. It errs on the side of true: a private key block
// label, or any secret-key packet even if truncated or unparseable, counts.
func ContainsPrivateKey(data []byte) bool {
	if bytes.Contains(data, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
		return true
	}
	marker := []byte("-----BEGIN PGP ")
	if i := bytes.Index(data, marker); i >= 0 {
		// Check the body of every armored block: the label may lie.
		for i >= 0 {
			block, err := armor.Decode(bytes.NewReader(data[i:]))
			if err == nil {
				if body, err := io.ReadAll(block.Body); err == nil || len(body) > 0 {
					if binaryHasPrivate(body) {
						return true
					}
				}
			}
			next := bytes.Index(data[i+len(marker):], marker)
			if next < 0 {
				break
			}
			i += len(marker) + next
		}
		return false
	}
	return binaryHasPrivate(data)
}

func binaryHasPrivate(data []byte) bool {
	r := bytes.NewReader(data)
	for r.Len() > 0 {
		before := r.Len()
		p, err := packet.Read(r)
		switch p.(type) {
		case *packet.PrivateKey:
			return true
		case *packet.SymmetricallyEncrypted, *packet.AEADEncrypted, *packet.Compressed, *packet.LiteralData:
			// A message, not a key: Read leaves these bodies unconsumed, and
			// draining a compressed one could be a decompression bomb.
			return false
		}
		if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || r.Len() == before) {
			return false
		}
	}
	return false
}
