package portal

import (
	"net/http"
	"net/url"
	"strings"
)

// safeNext keeps redirects on this site.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/") && !strings.HasPrefix(next, "//") && !strings.Contains(next, `\`) {
		return next
	}
	return "/inbox"
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
	out, err := s.opEnrolStart(r, v, enrolStartIn{Pending: pendingEnrol(r)})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.showEnrol(w, r, http.StatusOK, s.enrolPageData(r, v, out, r.FormValue("next")))
}

func (s *Server) enrolSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !v.mfaOK && len(v.user.TOTPSecretEnc) > 0 {
		http.Redirect(w, r, "/login/2fa", http.StatusSeeOther)
		return
	}
	pending := pendingEnrol(r)
	if r.PostFormValue("new") != "" {
		// "Show me a new key": the only way the secret changes.
		out, err := s.opEnrolStart(r, v, enrolStartIn{New: true})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		d := s.enrolPageData(r, v, out, r.PostFormValue("next"))
		d.Notice = "Here is a new key. Remove the account you added before from your authenticator app, then add this one."
		s.showEnrol(w, r, http.StatusOK, d)
		return
	}
	out, err := s.opEnrolConfirm(r, v, enrolConfirmIn{Pending: pending, Code: r.PostFormValue("code"), Current: r.PostFormValue("current")})
	if err != nil {
		// The same secret again, with what was wrong.
		again, serr := s.opEnrolStart(r, v, enrolStartIn{Pending: pending})
		if serr != nil {
			s.fail(w, r, serr)
			return
		}
		s.pageRefused(w, r, err, s.enrolPageData(r, v, again, r.PostFormValue("next")),
			func(status int, d pageData) { s.showEnrol(w, r, status, d) })
		return
	}
	forgetEnrol(w)
	s.setSessionCookie(w, out.token)
	d := s.data("Save your recovery codes")
	d.SignedIn, d.Codes, d.Next = true, out.RecoveryCodes, safeNext(r.PostFormValue("next"))
	if r.PostFormValue("next") == "" {
		d.Next = landing(v.user.Role) // issue 13.3
	}
	s.render(w, r, http.StatusOK, "codes.html", d)
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
	// The body is optional: {"pending": ...} shows that secret again,
	// {"new": true} or none makes a new one.
	var in enrolStartIn
	if r.ContentLength != 0 && !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opEnrolStart(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiEnrolConfirm(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in enrolConfirmIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opEnrolConfirm(r, v, in)
	if err == nil {
		s.setSessionCookie(w, out.token)
	}
	s.apiAnswer(w, r, http.StatusOK, out, err)
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
