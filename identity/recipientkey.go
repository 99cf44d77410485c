package identity

import (
	"context"
	"errors"
	"fmt"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// KeyChecker refuses OpenPGP keys that can't be used safely (expired,
// revoked, weak, not for this address); package pgpmime provides it.
type KeyChecker func(armored []byte, address string) (*pcrypto.Key, error)

func recipientKeyPurpose(idx []byte) string { return fmt.Sprintf("recipient-key:%x", idx) }

// RegisterRecipientKey stores an OpenPGP public key for an address, after
// the checks, sealed (its user ids name the address).
func (s *Service) RegisterRecipientKey(ctx context.Context, email string, armored []byte, by string) (string, error) {
	addr, err := ParseAddr(email)
	if err != nil {
		return "", err
	}
	if pcrypto.ContainsPrivateKey(armored) {
		return "", errors.New("identity: that is a private key; send only the public key")
	}
	check := s.CheckKey
	if check == nil {
		check = func(b []byte, _ string) (*pcrypto.Key, error) { return pcrypto.ReadKey(b) }
	}
	k, err := check(armored, addr)
	if err != nil {
		return "", err
	}
	pub, err := k.PublicArmored()
	if err != nil {
		return "", err
	}
	idx := s.Keys.EmailIndex(addr)
	sealed, err := s.Keys.SealField(recipientKeyPurpose(idx), pub)
	if err != nil {
		return "", err
	}
	return k.Fingerprint(), s.Store.SetRecipientKey(ctx, store.RecipientKey{EmailIndex: idx, Fingerprint: k.Fingerprint(),
		PublicKeyEnc: sealed, AddedBy: by, CreatedAt: s.now()})
}

// RecipientKey returns the registered key for an address, re-checked now
// (a key may have expired or been revoked since it was registered).
func (s *Service) RecipientKey(ctx context.Context, addr string) (*pcrypto.Key, error) {
	idx := s.Keys.EmailIndex(addr)
	rk, err := s.Store.RecipientKeyByIndex(ctx, idx)
	if err != nil {
		return nil, err
	}
	pub, err := s.Keys.OpenField(recipientKeyPurpose(idx), rk.PublicKeyEnc)
	if err != nil {
		return nil, err
	}
	if s.CheckKey != nil {
		return s.CheckKey(pub, addr)
	}
	return pcrypto.ReadKey(pub)
}
