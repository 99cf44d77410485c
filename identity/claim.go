package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/phigate/phigate/audit"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// NewClaimToken returns a random single-use token (given to the recipient in
// the notice) and its stored form (only the hash is kept).
func (s *Service) NewClaimToken(userID string, ttl time.Duration) (string, store.ClaimToken) {
	raw := base64.RawURLEncoding.EncodeToString(pcrypto.RandomBytes(32))
	now := s.now()
	return raw, store.ClaimToken{Hash: hashToken(raw), UserID: userID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
}

func hashToken(raw string) []byte {
	h := sha256.Sum256([]byte(raw))
	return h[:]
}

// CheckClaimToken tells whether a claim link is still good (for the page
// that asks for a password) without spending it.
func (s *Service) CheckClaimToken(ctx context.Context, raw string) (*store.User, error) {
	t, err := s.Store.ClaimTokenByHash(ctx, hashToken(raw))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrBadToken
		}
		return nil, err
	}
	if t.UsedAt != nil || !s.now().Before(t.ExpiresAt) {
		return nil, ErrBadToken
	}
	u, err := s.Store.UserByID(ctx, t.UserID)
	if err != nil {
		return nil, err
	}
	if u.Status != store.StatusPending {
		return nil, ErrBadToken
	}
	// A recipient whose only message was withdrawn (or has expired) is not
	// asked to choose a password for nothing (issue 13.1).
	if readable, _, err := s.Store.ClaimStanding(ctx, u.ID, s.now()); err != nil {
		return nil, err
	} else if readable == 0 {
		return nil, ErrNothingToRead
	}
	return u, nil
}

// Claim sets the first password of a pending account: it creates the
// recipient's real key, re-wraps every pending message's session keys to it
// and destroys the pending key, all in one transaction (DESIGN.md "Keys").
// It returns the active user and the new unlocked private key. The
// account.claim entry (the claimant's IP) commits in the same transaction.
func (s *Service) Claim(ctx context.Context, raw, password, ip string) (*store.User, []byte, error) {
	u, err := s.CheckClaimToken(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	email, err := s.Email(u)
	if err != nil {
		return nil, nil, err
	}
	if err := s.checkNewPassword(ctx, nil, email, password); err != nil {
		return nil, nil, err
	}
	pendingPriv, err := s.Keys.UnwrapPrivate(pendingKeyPurpose(u.ID), u.PrivateKeyWrapped)
	if err != nil {
		return nil, nil, fmt.Errorf("unwrap pending key: %w", err)
	}
	pending, err := pcrypto.ReadKey(pendingPriv)
	if err != nil {
		return nil, nil, err
	}
	k, priv, err := newAccountKey(u.ID)
	if err != nil {
		return nil, nil, err
	}
	params, salt, verifier, wrapped, err := s.sealWithPassword(ctx, u.ID, password, priv)
	if err != nil {
		return nil, nil, err
	}
	pub, err := k.PublicArmored()
	if err != nil {
		return nil, nil, err
	}
	b, err := audit.Prepare(ctx, s.Audit, audit.Entry{Actor: u.ID, IP: ip, Action: "account.claim",
		ObjectType: "user", ObjectID: u.ID, Outcome: audit.OK})
	if err != nil {
		return nil, nil, err
	}
	// A message may arrive while we re-wrap; the store refuses the claim if
	// the set changed, and we start over with the new set.
	for attempt := 0; attempt < 5; attempt++ {
		msgs, err := s.Store.MessageKeysForUser(ctx, u.ID)
		if err != nil {
			return nil, nil, err
		}
		re := make([]store.MessageKeys, len(msgs))
		for i, m := range msgs {
			kp, err := pcrypto.Rewrap(m.KeyPackets, pending, k)
			if err != nil {
				return nil, nil, s.rewrapFailed(ctx, u.ID, "message "+m.MessageID, err)
			}
			sk, err := pcrypto.Rewrap(m.SummaryKeys, pending, k)
			if err != nil {
				return nil, nil, s.rewrapFailed(ctx, u.ID, "summary "+m.MessageID, err)
			}
			re[i] = store.MessageKeys{MessageID: m.MessageID, KeyPackets: kp, SummaryKeys: sk}
		}
		err = s.Store.Claim(ctx, store.Claim{
			UserID: u.ID, TokenHash: hashToken(raw), OldKeyFpr: u.KeyFpr, NewKeyFpr: k.Fingerprint(),
			PublicKey: pub, PrivateKeyWrapped: wrapped, PwParams: params, PwSalt: salt, PwVerifier: verifier,
			Rewrapped: re, At: s.now(), Audit: b.Func(),
		})
		switch {
		case err == nil:
			// The entry committed with the claim; only a recorder that
			// cannot seal (tests) records it now, and may fail after the fact.
			_ = b.Committed(ctx)
			nu, err := s.Store.UserByID(ctx, u.ID)
			return nu, priv, err
		case errors.Is(err, store.ErrConflict):
			continue
		case errors.Is(err, store.ErrTokenSpent):
			return nil, nil, ErrBadToken
		default:
			return nil, nil, err
		}
	}
	return nil, nil, errors.New("claim: messages kept arriving; try again")
}

// rewrapFailed explains a failed re-wrap. When another claim with the same
// link won meanwhile, the messages are already sealed to that claim's key:
// this request is then simply a used link, not an internal error.
func (s *Service) rewrapFailed(ctx context.Context, userID, what string, err error) error {
	if errors.Is(err, pcrypto.ErrNoKeyPacket) {
		if u, uerr := s.Store.UserByID(ctx, userID); uerr == nil && u.Status != store.StatusPending {
			return ErrBadToken
		}
	}
	return fmt.Errorf("rewrap %s: %w", what, err)
}
