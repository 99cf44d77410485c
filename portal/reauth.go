package portal

import (
	"context"
	"errors"
	"net/http"

	"github.com/phigate/phigate/identity"
)

// Changing the second factor or making new recovery codes asks for a
// current factor again (issue 8.9), so that a session left open, or a
// stolen cookie, cannot swap the factor for one the holder controls.

// What a signed-in user must give again before such a change.
const (
	reauthNone     = ""         // in the sign-in's own enrolment step (see reauthKind)
	reauthCode     = "code"     // the current authenticator code or a recovery code
	reauthPassword = "password" // the account's password
)

// errCurrentMissing: the change was asked for without the current factor.
var errCurrentMissing = errors.New("portal: current factor missing")

// reauthKind is what v must prove again: a current code when the account
// has a second factor; the password when it has none and the session is
// past sign-in; nothing in the enrolment step that completes a sign-in,
// whose session proved the password moments before and has no other
// factor to offer (it can do nothing else until enrolled).
func reauthKind(v *viewer) string {
	switch {
	case len(v.user.TOTPSecretEnc) > 0:
		return reauthCode
	case v.mfaOK:
		return reauthPassword
	}
	return reauthNone
}

// reauthLabel names the field a page asks for, or "" if none.
func reauthLabel(v *viewer) string {
	switch reauthKind(v) {
	case reauthCode:
		return "Current code from your authenticator app, or one of your recovery codes"
	case reauthPassword:
		return "Your password"
	}
	return ""
}

// confirmCurrent checks the current factor v gave before a change of its
// second factor or recovery codes. Wrong answers count towards the
// account's lock-out exactly like sign-in failures (a used recovery code
// is spent, a TOTP step used once).
func (s *Server) confirmCurrent(r *http.Request, v *viewer, current string) error {
	kind := reauthKind(v)
	if kind == reauthNone {
		return nil
	}
	if current == "" {
		return errCurrentMissing
	}
	if kind == reauthPassword {
		email, err := s.Identity.Email(v.user)
		if err != nil {
			return err
		}
		u, _, err := s.checkPassword(r, email, current)
		if err == nil && u.ID != v.user.ID {
			err = identity.ErrBadCredentials // cannot happen: one address, one account
		}
		s.auditReauth(r, v, kind, err)
		return err
	}
	ctx, acct := r.Context(), indexKey(v.user.EmailIndex)
	res, err := s.reserve(ctx, acct, ipKey(info(r).ip))
	if err != nil {
		return err
	}
	_, err = s.Identity.VerifySecondFactor(ctx, v.user, current)
	switch {
	case errors.Is(err, identity.ErrBadCode):
		s.countFailure(r, acct, "reauth", res)
	case err != nil:
		_ = res.Release(context.WithoutCancel(ctx))
	default:
		err = res.Succeeded(context.WithoutCancel(ctx))
	}
	s.auditReauth(r, v, kind, err)
	return err
}

func (s *Server) auditReauth(r *http.Request, v *viewer, kind string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	s.audit(r, "auth.reauth", "user", v.user.ID, outcome, map[string]string{"factor": kind})
}

// reauthRefusal puts a refused confirmation into words, or reports that err
// is not a refusal (an internal fault).
func (s *Server) reauthRefusal(v *viewer, err error) (string, bool) {
	switch {
	case errors.Is(err, errCurrentMissing):
		return "To change how you sign in, first confirm it is you: " + reauthLabel(v) + ".", true
	case errors.Is(err, identity.ErrBadCode), errors.Is(err, identity.ErrBadCredentials):
		if reauthKind(v) == reauthPassword {
			return "That password is not right.", true
		}
		return "That code is not right, or was already used. Enter the current code from your authenticator app, or one of your recovery codes.", true
	}
	return s.signInRefusal(err)
}

// reauthRefused turns a refused confirmation into the refusal both faces
// answer: 400 reauth_required when the factor is missing, 401
// bad_current_factor when it is wrong, the sign-in refusals (locked,
// throttled) otherwise, or err unchanged for a fault.
func (s *Server) reauthRefused(v *viewer, err error) error {
	msg, _ := s.reauthRefusal(v, err)
	var oe *opError
	switch {
	case errors.Is(err, errCurrentMissing):
		oe = refused(http.StatusBadRequest, "reauth_required", msg, err)
	case errors.Is(err, identity.ErrBadCode), errors.Is(err, identity.ErrBadCredentials):
		oe = refused(http.StatusUnauthorized, "bad_current_factor", msg, err)
	default:
		return s.signInRefused(err)
	}
	oe.Field = "current"
	return oe
}
