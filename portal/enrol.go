package portal

// Second-factor enrolment (issue 13.6), one operation per step under the
// page and the API (ops-pattern.md).
//
// The secret stays the same until the enrolment succeeds or the person asks
// for a new one: a mistyped code, a reloaded page or a phone that reloads
// the tab on the way back from the authenticator app shows the same QR code
// and key again. The pending secret is sealed by the server (AEAD under the
// master key, bound to the account: identity.StartTOTP) and travels only in
// the form's body, the API's JSON and an HttpOnly, SameSite=Strict cookie
// scoped to the enrolment page; never in a URL, never readable by a script.

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/phigate/phigate/identity"
)

// enrolCookie holds the sealed pending secret between page loads.
const enrolCookie = "phigate_enrol"

type enrolStartIn struct {
	// Pending is the sealed secret of an enrolment begun earlier ("" none):
	// its secret is shown again unless New is set.
	Pending string `json:"pending"`
	New     bool   `json:"new"` // the person asked for a new secret
}

type enrolStartOut struct {
	Secret  string `json:"secret"`
	URI     string `json:"uri"`
	Pending string `json:"pending"`
	enrol   *identity.Enrolment
}

// opEnrolStart shows the authenticator secret to add: the pending one
// again when it is this account's, else a new one.
func (s *Server) opEnrolStart(r *http.Request, v *viewer, in enrolStartIn) (enrolStartOut, error) {
	if len(v.user.TOTPSecretEnc) > 0 && !v.mfaOK {
		return enrolStartOut{}, refused(http.StatusForbidden, "mfa_required",
			"This account already has an authenticator app: enter a code from it to sign in.", nil)
	}
	var e *identity.Enrolment
	if in.Pending != "" && !in.New {
		if raw, err := base64.RawURLEncoding.DecodeString(in.Pending); err == nil {
			var err error
			e, err = s.Identity.ResumeTOTP(r.Context(), v.user, raw)
			if err != nil && !errors.Is(err, identity.ErrBadCode) {
				return enrolStartOut{}, err
			}
			// Not this account's (or damaged): a new secret, as if none.
		}
	}
	if e == nil {
		var err error
		if e, err = s.Identity.StartTOTP(r.Context(), v.user); err != nil {
			return enrolStartOut{}, err
		}
		if in.New {
			s.Log.InfoContext(r.Context(), "new authenticator secret asked for", "user", v.user.ID, "ip", info(r).ip)
		}
	}
	return enrolStartOut{Secret: e.Secret, URI: e.URI, Pending: base64.RawURLEncoding.EncodeToString(e.Pending), enrol: e}, nil
}

type enrolConfirmIn struct {
	Pending string `json:"pending"`
	Code    string `json:"code"`
	// Current: the current code or a recovery code, or the password
	// (see reauthKind).
	Current string `json:"current"`
}

type enrolConfirmOut struct {
	RecoveryCodes []string `json:"recovery_codes"`
	token         string   // the session's new cookie (second factor done)
}

// opEnrolConfirm checks the first code against the pending secret, stores
// the factor, marks this session's second factor done and returns the
// recovery codes. A wrong code changes nothing: the same secret stays.
func (s *Server) opEnrolConfirm(r *http.Request, v *viewer, in enrolConfirmIn) (enrolConfirmOut, error) {
	if len(v.user.TOTPSecretEnc) > 0 && !v.mfaOK {
		return enrolConfirmOut{}, refused(http.StatusForbidden, "mfa_required",
			"This account already has an authenticator app: enter a code from it to sign in.", nil)
	}
	if err := s.confirmCurrent(r, v, in.Current); err != nil {
		return enrolConfirmOut{}, s.reauthRefused(v, err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(in.Pending)
	if err != nil || in.Pending == "" {
		return enrolConfirmOut{}, s.badEnrolCode(err)
	}
	codes, err := s.Identity.FinishTOTP(r.Context(), v.user, raw, in.Code)
	if errors.Is(err, identity.ErrBadCode) {
		return enrolConfirmOut{}, s.badEnrolCode(err)
	}
	if err != nil {
		return enrolConfirmOut{}, err
	}
	s.Log.InfoContext(r.Context(), "second factor enrolled", "user", v.user.ID, "ip", info(r).ip)
	s.audit(r, "auth.2fa.enrol", "user", v.user.ID, "ok", nil)
	token, err := s.rotateToken(r, v)
	if err != nil {
		return enrolConfirmOut{}, err
	}
	return enrolConfirmOut{RecoveryCodes: codes, token: token}, nil
}

func (s *Server) badEnrolCode(cause error) error {
	oe := refused(http.StatusBadRequest, "bad_code",
		"That code is not right. Your app keeps the account you added: enter the 6-digit code it shows now (a new one comes every 30 seconds).", cause)
	oe.Field = "code"
	return oe
}

// enrolPageData is the enrolment page for out.
func (s *Server) enrolPageData(r *http.Request, v *viewer, out enrolStartOut, next string) pageData {
	d := s.data("Set up your authenticator app")
	d.SignedIn, d.Enrol, d.Next, d.Current = true, out.enrol, safeNext(next), reauthKind(v)
	d.Token = out.Pending
	// A data: URL keeps the QR code inside this response (CSP img-src data:).
	d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(out.enrol.QRPNG))
	return d
}

// rememberEnrol keeps the sealed pending secret for the page's next load.
func rememberEnrol(w http.ResponseWriter, pending string) {
	http.SetCookie(w, &http.Cookie{Name: enrolCookie, Value: pending, Path: "/account/2fa", MaxAge: int((30 * time.Minute).Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func forgetEnrol(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: enrolCookie, Value: "", Path: "/account/2fa", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// pendingEnrol is the sealed pending secret the browser sent back: the
// form's field, else the cookie.
func pendingEnrol(r *http.Request) string {
	if p := r.PostFormValue("pending"); p != "" {
		return p
	}
	if c, err := r.Cookie(enrolCookie); err == nil {
		return c.Value
	}
	return ""
}

// showEnrol renders the enrolment page for out with status.
func (s *Server) showEnrol(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	rememberEnrol(w, d.Token)
	s.render(w, r, status, "enrol.html", d)
}
