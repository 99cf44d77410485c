package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// DKIM holds the two keys that sign notice emails (issue 10.5): RSA-2048,
// which every receiver verifies (RFC 6376, RFC 8301 3.2), and Ed25519
// (RFC 8463), which RFC 8463 section 3 advises adding beside an RSA
// signature while receivers move over.
type DKIM struct {
	RSA     *rsa.PrivateKey
	Ed25519 ed25519.PrivateKey
}

const dkimPurpose = "dkim-key"

// dkimFile is the wrapped file's plaintext: both keys in PKCS #8.
type dkimFile struct {
	RSA     []byte `json:"rsa"`
	Ed25519 []byte `json:"ed25519"`
}

// LoadDKIM reads the DKIM keys wrapped under the master key, or creates
// them at first start. A new key invalidates the published DNS records,
// so an existing file is never replaced.
func LoadDKIM(path string, r *Ring, log *slog.Logger) (*DKIM, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := createDKIM(path, r, log)
		if !errors.Is(err, os.ErrExist) {
			return k, err
		}
		// Another node sharing the folder made it first: use theirs.
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("keys.dkim_key_file: %w", err)
	}
	raw, err := r.UnwrapPrivate(dkimPurpose, b)
	if err != nil {
		return nil, fmt.Errorf("keys.dkim_key_file %s: cannot unwrap with this master key", path)
	}
	var f dkimFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("keys.dkim_key_file %s: %w", path, err)
	}
	k := &DKIM{}
	for _, p := range []struct {
		der  []byte
		into func(any) bool
	}{
		{f.RSA, func(v any) bool { k.RSA, _ = v.(*rsa.PrivateKey); return k.RSA != nil }},
		{f.Ed25519, func(v any) bool { k.Ed25519, _ = v.(ed25519.PrivateKey); return k.Ed25519 != nil }},
	} {
		v, err := x509.ParsePKCS8PrivateKey(p.der)
		if err != nil || !p.into(v) {
			return nil, fmt.Errorf("keys.dkim_key_file %s: a key is missing or not of the expected type", path)
		}
	}
	return k, nil
}

func createDKIM(path string, r *Ring, log *slog.Logger) (*DKIM, error) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var f dkimFile
	if f.RSA, err = x509.MarshalPKCS8PrivateKey(rk); err != nil {
		return nil, err
	}
	if f.Ed25519, err = x509.MarshalPKCS8PrivateKey(ek); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	sealed, err := r.WrapPrivate(dkimPurpose, plain)
	if err != nil {
		return nil, err
	}
	if err := writeFile(path, sealed); err != nil {
		return nil, err
	}
	log.Info("created the DKIM keys for notice emails: publish their DNS records (phigate dkim show)", "file", path)
	return &DKIM{RSA: rk, Ed25519: ek}, nil
}
