package identity

import (
	"context"
	"errors"

	"github.com/phigate/phigate/store"
)

// ErrNothingToRead: the claim link's account has no message left to read
// (recalled, denied, purged or expired): it is not asked for a password.
var ErrNothingToRead = errors.New("identity: nothing left to read for this link")

// ClaimLink returns a claim link's token and account whatever the link's
// state (used, expired or replaced), for the page of a link that no longer
// works (issue 13.1): it offers a new link, or sign-in to an account that
// was claimed. ErrBadToken: no such claim link (a reset link is not one).
func (s *Service) ClaimLink(ctx context.Context, raw string) (*store.ClaimToken, *store.User, error) {
	t, err := s.Store.ClaimTokenByHash(ctx, hashToken(raw))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrBadToken
	}
	if err != nil {
		return nil, nil, err
	}
	if t.Kind != "" && t.Kind != store.TokenClaim {
		return nil, nil, ErrBadToken
	}
	u, err := s.Store.UserByID(ctx, t.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrBadToken
	}
	if err != nil {
		return nil, nil, err
	}
	return t, u, nil
}

// LinkUsable tells whether t may still be spent at the service's now.
func (s *Service) LinkUsable(t *store.ClaimToken) bool {
	return t.UsedAt == nil && s.now().Before(t.ExpiresAt)
}
