package identity

import (
	"context"

	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/totp"
)

// ResumeTOTP reopens an enrolment StartTOTP began for u: pending is the
// sealed secret it returned (bound to u; anything else is ErrBadCode). The
// QR code and key are the same as before, so a mistyped first code or a
// reloaded page does not change the account the person's app has already
// added (issue 13.6).
func (s *Service) ResumeTOTP(ctx context.Context, u *store.User, pending []byte) (*Enrolment, error) {
	secret, err := s.Keys.OpenField(totpEnrolPurpose(u.ID), pending)
	if err != nil {
		return nil, ErrBadCode
	}
	email, err := s.Email(u)
	if err != nil {
		return nil, err
	}
	e, err := totp.Again(s.OrgName, email, string(secret))
	if err != nil {
		return nil, ErrBadCode
	}
	return &Enrolment{Enrolment: e, Pending: pending}, nil
}
