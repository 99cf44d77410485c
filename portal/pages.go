package portal

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/session"
)

// pageData is what every template sees.
type pageData struct {
	Title, Org, Contact string
	SignedIn            bool
	Error, Notice       string

	Email     string
	Token     string
	Invalid   bool
	MinLength int
	Messages  []listItem
	ID        string
	M         *message.View
	Signature string
	HasHTML   bool
	ExpiresAt time.Time
}

func (s *Server) data(title string) pageData {
	return pageData{Title: title, Org: s.Org.Name, Contact: s.Org.Contact, MinLength: identity.MinPasswordLength}
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, name, d); err != nil {
		s.Log.ErrorContext(r.Context(), "render", "template", name, "err", err)
	}
}

// fail shows a generic error page with the request id: never the cause.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	// The route pattern, not the path: a path can hold a claim token.
	s.Log.ErrorContext(r.Context(), "request failed", "route", r.Pattern, "err", err)
	d := s.data("Something went wrong")
	d.Error = "We could not complete this request. Please try again; if it keeps happening, contact " +
		s.Org.Contact + " and mention reference " + info(r).cid + "."
	s.render(w, r, http.StatusInternalServerError, "error.html", d)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/inbox", http.StatusSeeOther)
}

// page wraps handlers that need a signed-in viewer; without one the browser
// goes to the sign-in page with a reason.
func (s *Server) page(h func(http.ResponseWriter, *http.Request, *viewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.resume(r)
		if err != nil {
			clearSessionCookie(w)
			target := "/login"
			if errors.Is(err, session.ErrExpired) {
				target += "?ended=idle"
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		h(w, r, v)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	d := s.data("Sign in")
	switch r.URL.Query().Get("ended") {
	case "idle":
		d.Notice = "You were signed out after a period of inactivity, to protect your information."
	case "logout":
		d.Notice = "You have signed out."
	}
	s.render(w, r, http.StatusOK, "login.html", d)
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) {
	email, pw := strings.TrimSpace(r.PostFormValue("email")), r.PostFormValue("password")
	u, priv, err := s.Identity.Login(r.Context(), email, pw)
	if errors.Is(err, identity.ErrBadCredentials) {
		s.Log.WarnContext(r.Context(), "sign-in failed", "ip", info(r).ip)
		d := s.data("Sign in")
		d.Email, d.Error = email, "That email address and password don't match. Check them and try again."
		s.render(w, r, http.StatusUnauthorized, "login.html", d)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.startSession(w, r, u, priv, "password"); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/inbox", http.StatusSeeOther)
}

func (s *Server) claimPage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	d := s.data("Choose a password")
	if _, err := s.Identity.CheckClaimToken(r.Context(), token); err != nil {
		if !errors.Is(err, identity.ErrBadToken) {
			s.fail(w, r, err)
			return
		}
		d.Invalid, d.Error = true, "This link has already been used or has expired."
		s.render(w, r, http.StatusGone, "claim.html", d)
		return
	}
	d.Token = token
	s.render(w, r, http.StatusOK, "claim.html", d)
}

func (s *Server) claimSubmit(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	pw, confirm := r.PostFormValue("password"), r.PostFormValue("confirm")
	d := s.data("Choose a password")
	d.Token = token
	if pw != confirm {
		d.Error = "The two passwords are not the same. Type the same password in both boxes."
		s.render(w, r, http.StatusBadRequest, "claim.html", d)
		return
	}
	u, priv, err := s.Identity.Claim(r.Context(), token, pw)
	switch {
	case errors.Is(err, identity.ErrBadToken):
		d.Invalid, d.Error = true, "This link has already been used or has expired."
		s.render(w, r, http.StatusGone, "claim.html", d)
		return
	case errors.Is(err, identity.ErrWeakPassword):
		d.Error = strings.TrimPrefix(err.Error(), identity.ErrWeakPassword.Error()+": ")
		d.Error = "This password is too short: " + d.Error + "."
		s.render(w, r, http.StatusBadRequest, "claim.html", d)
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.Log.InfoContext(r.Context(), "account claimed", "user", u.ID, "ip", info(r).ip)
	if err := s.startSession(w, r, u, priv, "claim"); err != nil {
		s.fail(w, r, err)
		return
	}
	// Straight to the message, not a dashboard (DESIGN.md, the portal as a
	// patient meets it).
	target := "/inbox"
	if msgs, err := s.Store.ListMessages(r.Context(), u.ID, s.now()); err == nil && len(msgs) == 1 {
		target = "/messages/" + msgs[0].ID
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	s.endSession(r)
	clearSessionCookie(w)
	http.Redirect(w, r, "/login?ended=logout", http.StatusSeeOther)
}

func (s *Server) endSession(r *http.Request) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return
	}
	if v, err := s.resume(r); err == nil {
		s.Log.InfoContext(r.Context(), "logoff", "reason", "user", "user", v.rec.UserID, "ip", info(r).ip)
	}
	_ = s.Sessions.End(r.Context(), c.Value)
}

func (s *Server) inboxPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	items, err := s.list(r.Context(), v)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Your secure messages")
	d.SignedIn, d.Messages = true, items
	s.render(w, r, http.StatusOK, "inbox.html", d)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	d := s.data("Message not found")
	d.SignedIn = true
	d.Error = "This message does not exist, has expired, or is not addressed to you."
	s.render(w, r, http.StatusNotFound, "error.html", d)
}

func (s *Server) messagePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := s.openAndAudit(w, r, v, "read")
	if err != nil {
		return
	}
	d := s.data("Secure message")
	d.SignedIn, d.ID, d.M, d.Signature, d.ExpiresAt = true, o.Meta.ID, o.View, o.Signature.String(), o.Meta.ExpiresAt
	d.HasHTML = o.View.HTML != ""
	s.render(w, r, http.StatusOK, "message.html", d)
}

// openAndAudit opens a message for v, logs the access, marks it read, and
// writes the error response itself when it fails.
func (s *Server) openAndAudit(w http.ResponseWriter, r *http.Request, v *viewer, what string) (*opened, error) {
	id := r.PathValue("id")
	o, err := s.open(r.Context(), v, id)
	if errors.Is(err, errNoMessage) {
		s.Log.WarnContext(r.Context(), "message access denied", "user", v.rec.UserID, "message", id, "ip", info(r).ip, "what", what)
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeJSONError(w, http.StatusNotFound, "not_found", "no such message")
		} else {
			s.notFound(w, r)
		}
		return nil, err
	}
	if err != nil {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			s.apiFail(w, r, err)
		} else {
			s.fail(w, r, err)
		}
		return nil, err
	}
	s.Log.InfoContext(r.Context(), "message opened", "user", v.rec.UserID, "message", id, "ip", info(r).ip,
		"what", what, "signature", o.Signature.String())
	if o.Meta.ReadAt == nil {
		if err := s.Store.MarkRead(r.Context(), id, s.now()); err != nil {
			s.Log.ErrorContext(r.Context(), "mark read", "message", id, "err", err)
		}
	}
	return o, nil
}

// messageContent serves the sanitised HTML body for the sandboxed frame.
// Its CSP allows nothing to load but inline data: images, and sandboxes the
// document (no scripts, no forms, unique origin).
func (s *Server) messageContent(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := s.openAndAudit(w, r, v, "content")
	if err != nil {
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(`<!doctype html><html><head><meta charset="utf-8"><base target="_blank"></head><body style="font-family:sans-serif;word-wrap:break-word">`))
	w.Write([]byte(message.SanitizeHTML(o.View.HTML)))
	w.Write([]byte(`</body></html>`))
}

// attachment serves one attachment as a download, never rendered inline.
func (s *Server) attachment(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := s.openAndAudit(w, r, v, "attachment")
	if err != nil {
		return
	}
	aid := r.PathValue("aid")
	for _, a := range o.View.Attachments {
		if a.ID != aid {
			continue
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Filename}))
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		w.Write(a.Data)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such attachment")
		return
	}
	s.notFound(w, r)
}
