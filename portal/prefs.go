package portal

// Issue 10.4: how the account holder hears of a new message (email, push
// or both), within the organisation's rules. One operation behind the
// account page and the JSON API; the account.notify-prefs entry commits
// with the change.

import (
	"errors"
	"net/http"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/notify"
)

func (s *Server) prefs() *notify.Prefs {
	if s.Intake == nil {
		return nil
	}
	return s.Intake.Prefs
}

func (s *Server) prefsRoutes(h func(pattern string, p Perm, fn handler)) {
	if s.prefs() == nil {
		return
	}
	h("POST /account/notifications", PermOwn, s.prefsSubmit)
	h("GET /api/v1/account/notifications", PermOwn, s.apiPrefs)
	h("PUT /api/v1/account/notifications", PermOwn, s.apiPrefsSet)
}

// prefsData fills the account page's choice of channels.
func (s *Server) prefsData(r *http.Request, v *viewer, d *pageData) {
	p := s.prefs()
	if p == nil {
		return
	}
	pv, err := p.View(r.Context(), v.user.ID)
	if err != nil {
		s.Log.ErrorContext(r.Context(), "notification preferences", "err", err)
		return
	}
	d.Prefs = &pv
	if r.URL.Query().Get("prefs") == "saved" {
		d.Notice = "Your notification choice is saved."
	}
}

// setPrefs is the one change operation.
func (s *Server) setPrefs(r *http.Request, v *viewer, choice string) error {
	if !notify.ValidChoice(choice) {
		return notify.ErrBadChoice
	}
	b, err := audit.Prepare(r.Context(), s.Audit, audit.Entry{Actor: v.user.ID, IP: info(r).ip,
		Action: "account.notify-prefs", ObjectType: "user", ObjectID: v.user.ID, Outcome: audit.OK,
		Details: map[string]string{"channels": choice}})
	if err != nil {
		return err
	}
	if err := s.prefs().SetChoice(r.Context(), v.user.ID, choice, s.now(), b.Func()); err != nil {
		return err
	}
	s.Log.InfoContext(r.Context(), "notification channels chosen", "user", v.user.ID, "channels", choice)
	return b.Committed(r.Context())
}

func (s *Server) prefsSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	err := s.setPrefs(r, v, r.PostFormValue("channels"))
	if errors.Is(err, notify.ErrBadChoice) {
		d := s.accountData(r, v)
		d.Error = "Choose email, notifications on your devices, or both."
		s.render(w, r, http.StatusBadRequest, "account.html", d)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?prefs=saved#notify-prefs", http.StatusSeeOther)
}

func (s *Server) apiPrefs(w http.ResponseWriter, r *http.Request, v *viewer) {
	pv, err := s.prefs().View(r.Context(), v.user.ID)
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pv)
}

func (s *Server) apiPrefsSet(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Channels string `json:"channels"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	err := s.setPrefs(r, v, req.Channels)
	switch {
	case errors.Is(err, notify.ErrBadChoice):
		writeJSONError(w, http.StatusBadRequest, "bad_channels", err.Error())
		return
	case err != nil:
		s.apiFail(w, r, err)
		return
	}
	s.apiPrefs(w, r, v)
}
