package keys

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// VAPID is the application server's Web Push signing key pair (RFC 8292),
// in the unpadded base64url form browsers (applicationServerKey) and
// webpush-go take: Public is the uncompressed P-256 point, Private the
// 32-byte scalar.
type VAPID struct {
	Public  string
	Private string
}

const vapidPurpose = "vapid-key"

// LoadVAPID reads the VAPID private key wrapped under the master key, or
// creates it at first start. Browsers tie each subscription to this
// public key: a new key silently ends every subscription, so it is never
// replaced automatically.
func LoadVAPID(path string, r *Ring, log *slog.Logger) (*VAPID, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		sealed, err := r.WrapPrivate(vapidPurpose, k.Bytes())
		if err != nil {
			return nil, err
		}
		if err := writeFile(path, sealed); err != nil {
			return nil, err
		}
		log.Info("created the Web Push (VAPID) key", "file", path)
		return vapidOf(k), nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys.vapid_key_file: %w", err)
	}
	raw, err := r.UnwrapPrivate(vapidPurpose, b)
	if err != nil {
		return nil, fmt.Errorf("keys.vapid_key_file %s: cannot unwrap with this master key", path)
	}
	k, err := ecdh.P256().NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("keys.vapid_key_file %s: %w", path, err)
	}
	return vapidOf(k), nil
}

func vapidOf(k *ecdh.PrivateKey) *VAPID {
	enc := base64.RawURLEncoding.EncodeToString
	return &VAPID{Public: enc(k.PublicKey().Bytes()), Private: enc(k.Bytes())}
}
