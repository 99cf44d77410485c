package crypto

import (
	"bytes"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// WithEarlier returns k's public half as a verifier that also accepts
// signatures by the earlier keys (public halves are enough): after a
// gateway signing-key rotation (issue 14.3), messages signed by a retired
// key still verify. Only Open's signature check looks at them; encryption
// and fingerprints are k's own.
func (k *Key) WithEarlier(earlier ...*Key) *Key {
	v := k.Public()
	for _, o := range earlier {
		if o != nil && o.Fingerprint() != k.Fingerprint() {
			v.earlier = append(v.earlier, o.Public().e)
		}
	}
	return v
}

// Accepts reports whether fingerprint is k's or one of its earlier keys'
// (WithEarlier).
func (k *Key) Accepts(fingerprint string) bool {
	if k.Fingerprint() == fingerprint {
		return true
	}
	for _, e := range k.earlier {
		if (&Key{e: e}).Fingerprint() == fingerprint {
			return true
		}
	}
	return false
}

// PublicKeyring returns the public halves of keys in one armored block
// (several blocks in one file are not all imported by every tool; one
// block of several keys is: gpg --import reads each).
func PublicKeyring(keys ...*Key) ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := k.e.Serialize(w); err != nil {
			return nil, fmt.Errorf("crypto: serialize public key: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
