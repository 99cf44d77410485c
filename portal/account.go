package portal

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/phigate/phigate/identity"
)

// safeNext keeps redirects on this site.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/") && !strings.HasPrefix(next, "//") && !strings.Contains(next, `\`) {
		return next
	}
	return "/inbox"
}

func (s *Server) enrolData(w http.ResponseWriter, r *http.Request, v *viewer) (pageData, bool) {
	e, err := s.Identity.StartTOTP(r.Context(), v.user)
	if err != nil {
		s.fail(w, r, err)
		return pageData{}, false
	}
	d := s.data("Set up your authenticator app")
	d.SignedIn, d.Enrol, d.Next, d.Current = true, e, safeNext(r.FormValue("next")), reauthKind(v)
	d.Token = base64.RawURLEncoding.EncodeToString(e.Pending)
	// A data: URL keeps the QR code inside this response (CSP img-src data:).
	d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QRPNG))
	return d, true
}

func (s *Server) enrolPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	if v.mfaOK && len(v.user.TOTPSecretEnc) > 0 && r.URL.Query().Get("again") == "" {
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	if !v.mfaOK && len(v.user.TOTPSecretEnc) > 0 {
		// Enrolled already: the pending session must prove the factor, not
		// replace it.
		http.Redirect(w, r, "/login/2fa", http.StatusSeeOther)
		return
	}
	if d, ok := s.enrolData(w, r, v); ok {
		s.render(w, r, http.StatusOK, "enrol.html", d)
	}
}

func (s *Server) enrolSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !v.mfaOK && len(v.user.TOTPSecretEnc) > 0 {
		http.Redirect(w, r, "/login/2fa", http.StatusSeeOther)
		return
	}
	if err := s.confirmCurrent(r, v, r.PostFormValue("current")); err != nil {
		s.enrolRefused(w, r, v, err)
		return
	}
	codes, err := s.finishEnrol(w, r, v, r.PostFormValue("pending"), r.PostFormValue("code"))
	if errors.Is(err, identity.ErrBadCode) {
		d, ok := s.enrolData(w, r, v)
		if !ok {
			return
		}
		d.Error = "That code is not right. Scan the new QR code below and enter the 6-digit code your app shows."
		s.render(w, r, http.StatusBadRequest, "enrol.html", d)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Save your recovery codes")
	d.SignedIn, d.Codes, d.Next = true, codes, safeNext(r.PostFormValue("next"))
	if r.PostFormValue("next") == "" {
		d.Next = landing(v.user.Role) // issue 13.3
	}
	s.render(w, r, http.StatusOK, "codes.html", d)
}

// enrolRefused shows the enrolment page again (with a new secret) when the
// current factor was missing or wrong.
func (s *Server) enrolRefused(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	msg, ok := s.reauthRefusal(v, err)
	if !ok {
		s.fail(w, r, err)
		return
	}
	d, ok := s.enrolData(w, r, v)
	if !ok {
		return
	}
	d.Error = msg
	s.render(w, r, reauthStatus(err), "enrol.html", d)
}

// finishEnrol stores the new factor, marks this session's second factor
// done (new session id) and returns the recovery codes.
func (s *Server) finishEnrol(w http.ResponseWriter, r *http.Request, v *viewer, pending, code string) ([]string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(pending)
	if err != nil {
		return nil, identity.ErrBadCode
	}
	codes, err := s.Identity.FinishTOTP(r.Context(), v.user, raw, code)
	if err != nil {
		return nil, err
	}
	s.Log.InfoContext(r.Context(), "second factor enrolled", "user", v.user.ID, "ip", info(r).ip)
	s.audit(r, "auth.2fa.enrol", "user", v.user.ID, "ok", nil)
	if err := s.rotate(w, r, v); err != nil {
		return nil, err
	}
	return codes, nil
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.render(w, r, http.StatusOK, "account.html", s.accountData(r, v))
}

func (s *Server) accountData(r *http.Request, v *viewer) pageData {
	d := s.data("Your account")
	d.SignedIn, d.Current = true, reauthKind(v)
	d.Enrolled = len(v.user.TOTPSecretEnc) > 0
	// The page shows what it can: a part that fails is logged, not fatal.
	if acct, err := s.opAccount(r, v, struct{}{}); err != nil {
		s.Log.ErrorContext(r.Context(), "account summary", "err", err)
	} else {
		d.CodesLeft, d.Locked = acct.CodesLeft, acct.Locked
	}
	if pv, err := s.pushData(r, v); err != nil {
		s.Log.ErrorContext(r.Context(), "push devices", "err", err)
	} else {
		d.Push = pv
	}
	s.prefsData(r, v, &d)
	switch r.URL.Query().Get("push") {
	case "on":
		d.Notice = "Notifications are on for this device."
	case "removed":
		d.Notice = "The device no longer gets notifications."
	}
	if f := registeredFingerprint(r); f != "" {
		d.Notice = "Your key " + f + " is registered."
	}
	return d
}

type accountOut struct {
	User      userJSON `json:"user"`
	TwoFactor bool     `json:"two_factor"`
	CodesLeft int      `json:"recovery_codes_left"`
	Locked    int      `json:"locked_messages"`
}

// opAccount summarises the viewer's account: second factor, recovery codes
// left, messages waiting for escrow-assisted recovery.
func (s *Server) opAccount(r *http.Request, v *viewer, _ struct{}) (accountOut, error) {
	out := accountOut{User: userJSON{v.user.ID, v.user.Role}, TwoFactor: len(v.user.TOTPSecretEnc) > 0}
	var err error
	if out.CodesLeft, err = s.Store.CountRecoveryCodes(r.Context(), v.user.ID); err != nil {
		return out, err
	}
	out.Locked, err = s.Identity.LockedMessages(r.Context(), v.user)
	return out, err
}

type currentIn struct {
	// Current: the current code or a recovery code, or the password
	// (see reauthKind).
	Current string `json:"current"`
}

type codesOut struct {
	Codes []string `json:"recovery_codes"`
}

// opRecoveryCodes replaces the recovery codes after the current factor is
// confirmed again (issue 8.9).
func (s *Server) opRecoveryCodes(r *http.Request, v *viewer, in currentIn) (codesOut, error) {
	if err := s.confirmCurrent(r, v, in.Current); err != nil {
		return codesOut{}, s.reauthRefused(v, err)
	}
	codes, err := s.Identity.NewRecoveryCodes(r.Context(), v.user)
	if err != nil {
		return codesOut{}, err
	}
	s.Log.InfoContext(r.Context(), "recovery codes replaced", "user", v.user.ID, "ip", info(r).ip)
	s.audit(r, "auth.recovery-codes", "user", v.user.ID, "ok", nil)
	return codesOut{Codes: codes}, nil
}

func (s *Server) recoveryCodesSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opRecoveryCodes(r, v, currentIn{Current: r.PostFormValue("current")})
	if err != nil {
		d := s.accountData(r, v)
		d.Form = url.Values{} // never show a code or password again
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "account.html", d) })
		return
	}
	// Shown once, in this answer: no redirect, nothing stored to show later.
	d := s.data("Save your recovery codes")
	d.SignedIn, d.Codes, d.Next = true, out.Codes, "/account"
	s.render(w, r, http.StatusOK, "codes.html", d)
}

func (s *Server) signoutAllSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.opSignOutEverywhere(r, v, struct{}{}) // never refuses
	clearSessionCookie(w)
	http.Redirect(w, r, "/login?ended=everywhere", http.StatusSeeOther)
}

// keepalive is the "Stay signed in" button: any authenticated request
// slides the idle window, this one just has nothing else to do.
func (s *Server) keepalive(w http.ResponseWriter, r *http.Request, v *viewer) {
	writeJSON(w, http.StatusOK, map[string]int{"idle_seconds": int(s.Sessions.Idle.Seconds())})
}

func (s *Server) apiAccount(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opAccount(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiEnrolStart(w http.ResponseWriter, r *http.Request, v *viewer) {
	if len(v.user.TOTPSecretEnc) > 0 && !v.mfaOK {
		writeJSONError(w, http.StatusForbidden, "mfa_required", "this account already has an authenticator app: send a code to /api/v1/login/2fa")
		return
	}
	e, err := s.Identity.StartTOTP(r.Context(), v.user)
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secret": e.Secret, "uri": e.URI,
		"pending": base64.RawURLEncoding.EncodeToString(e.Pending)})
}

func (s *Server) apiEnrolConfirm(w http.ResponseWriter, r *http.Request, v *viewer) {
	if len(v.user.TOTPSecretEnc) > 0 && !v.mfaOK {
		writeJSONError(w, http.StatusForbidden, "mfa_required", "send a code to /api/v1/login/2fa")
		return
	}
	// Current: the current code or a recovery code, or the password
	// (see reauthKind).
	var req struct{ Pending, Code, Current string }
	if !decodeJSON(w, r, &req) {
		return
	}
	if err := s.confirmCurrent(r, v, req.Current); err != nil {
		s.apiReauthRefuse(w, r, v, err)
		return
	}
	codes, err := s.finishEnrol(w, r, v, req.Pending, req.Code)
	if errors.Is(err, identity.ErrBadCode) {
		writeJSONError(w, http.StatusBadRequest, "bad_code", "that code does not match the new secret")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}

func (s *Server) apiRecoveryCodes(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in currentIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opRecoveryCodes(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiSignoutAll(w http.ResponseWriter, r *http.Request, v *viewer) {
	_, err := s.opSignOutEverywhere(r, v, struct{}{})
	if err == nil {
		clearSessionCookie(w)
	}
	s.apiAnswer(w, r, http.StatusNoContent, nil, err)
}
