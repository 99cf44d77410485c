package portal

// Issue 10.4: how the account holder hears of a new message (email, push
// or both), within the organisation's rules. One operation behind the
// account page and the JSON API; the account.notify-prefs entry commits
// with the change.

import (
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
	if s.prefs() == nil {
		return
	}
	pv, err := s.opPrefs(r, v, struct{}{})
	if err != nil {
		s.Log.ErrorContext(r.Context(), "notification preferences", "err", err)
		return
	}
	d.Prefs = &pv
	if r.URL.Query().Get("prefs") == "saved" {
		d.Notice = "Your notification choice is saved."
	}
}

// opPrefs is the account's choice of channels, within the organisation's
// rules.
func (s *Server) opPrefs(r *http.Request, v *viewer, _ struct{}) (notify.PrefsView, error) {
	return s.prefs().View(r.Context(), v.user.ID)
}

type prefsIn struct {
	Channels string `json:"channels"`
}

// opSetPrefs is the one change operation; the account.notify-prefs entry
// commits with the change. It answers the choice as it now stands.
func (s *Server) opSetPrefs(r *http.Request, v *viewer, in prefsIn) (notify.PrefsView, error) {
	if !notify.ValidChoice(in.Channels) {
		oe := refused(http.StatusBadRequest, "bad_channels", "Choose email, notifications on your devices, or both.", notify.ErrBadChoice)
		oe.Field = "channels"
		return notify.PrefsView{}, oe
	}
	b, err := audit.Prepare(r.Context(), s.Audit, audit.Entry{Actor: v.user.ID, IP: info(r).ip,
		Action: "account.notify-prefs", ObjectType: "user", ObjectID: v.user.ID, Outcome: audit.OK,
		Details: map[string]string{"channels": in.Channels}})
	if err != nil {
		return notify.PrefsView{}, err
	}
	if err := s.prefs().SetChoice(r.Context(), v.user.ID, in.Channels, s.now(), b.Func()); err != nil {
		return notify.PrefsView{}, err
	}
	s.Log.InfoContext(r.Context(), "notification channels chosen", "user", v.user.ID, "channels", in.Channels)
	if err := b.Committed(r.Context()); err != nil {
		return notify.PrefsView{}, err
	}
	return s.opPrefs(r, v, struct{}{})
}

func (s *Server) prefsSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if _, err := s.opSetPrefs(r, v, prefsIn{Channels: r.PostFormValue("channels")}); err != nil {
		s.pageRefused(w, r, err, s.accountData(r, v), func(status int, d pageData) { s.render(w, r, status, "account.html", d) })
		return
	}
	http.Redirect(w, r, "/account?prefs=saved#notify-prefs", http.StatusSeeOther)
}

func (s *Server) apiPrefs(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opPrefs(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiPrefsSet(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in prefsIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opSetPrefs(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}
