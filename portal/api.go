package portal

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/session"
)

// maxJSONBody bounds API request bodies (credentials only).
const maxJSONBody = 16 << 10

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

func (s *Server) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	s.Log.ErrorContext(r.Context(), "api request failed", "route", r.Pattern, "err", err)
	writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal",
		Message: "the request could not be completed; try again or contact support with the reference", Ref: info(r).cid})
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeJSONError(w, http.StatusUnsupportedMediaType, "bad_request", "send Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "the request body is not valid JSON for this call")
		return false
	}
	return true
}

// api wraps handlers that need a session; without one: 401 with a reason.
func (s *Server) api(h func(http.ResponseWriter, *http.Request, *viewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.resume(r)
		if err != nil {
			code, msg := "unauthenticated", "sign in first"
			if errors.Is(err, session.ErrExpired) {
				code, msg = "session_expired", "the session ended after inactivity; sign in again"
			}
			writeJSONError(w, http.StatusUnauthorized, code, msg)
			return
		}
		h(w, r, v)
	}
}

type userJSON struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	var req struct{ Email, Password string }
	if !decodeJSON(w, r, &req) {
		return
	}
	u, priv, err := s.Identity.Login(r.Context(), req.Email, req.Password)
	if errors.Is(err, identity.ErrBadCredentials) {
		s.Log.WarnContext(r.Context(), "sign-in failed", "ip", info(r).ip)
		writeJSONError(w, http.StatusUnauthorized, "bad_credentials", "email and password don't match")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	if err := s.startSession(w, r, u, priv, "password"); err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userJSON{u.ID, u.Role}})
}

func (s *Server) apiClaim(w http.ResponseWriter, r *http.Request) {
	var req struct{ Token, Password string }
	if !decodeJSON(w, r, &req) {
		return
	}
	u, priv, err := s.Identity.Claim(r.Context(), req.Token, req.Password)
	switch {
	case errors.Is(err, identity.ErrBadToken):
		writeJSONError(w, http.StatusGone, "bad_token", "this claim link was already used, has expired, or is not valid")
		return
	case errors.Is(err, identity.ErrWeakPassword):
		writeJSONError(w, http.StatusBadRequest, "weak_password", strings.TrimPrefix(err.Error(), "identity: "))
		return
	case err != nil:
		s.apiFail(w, r, err)
		return
	}
	s.Log.InfoContext(r.Context(), "account claimed", "user", u.ID, "ip", info(r).ip)
	if err := s.startSession(w, r, u, priv, "claim"); err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userJSON{u.ID, u.Role}})
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) {
	s.endSession(r)
	clearSessionCookie(w)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiMessages(w http.ResponseWriter, r *http.Request, v *viewer) {
	items, err := s.list(r.Context(), v)
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": items})
}

type messageJSON struct {
	ID          string               `json:"id"`
	Headers     headersJSON          `json:"headers"`
	Text        string               `json:"text"`
	HTML        string               `json:"html"`
	Attachments []message.Attachment `json:"attachments"`
	Signature   string               `json:"signature"`
	ReceivedAt  time.Time            `json:"received_at"`
	ExpiresAt   time.Time            `json:"expires_at"`
	Problems    []string             `json:"problems"`
}

type headersJSON struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	Cc        string    `json:"cc,omitempty"`
	Subject   string    `json:"subject"`
	Date      time.Time `json:"date"`
	MessageID string    `json:"message_id"`
}

func (s *Server) apiMessage(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, err := s.openAndAudit(w, r, v, "read")
	if err != nil {
		return
	}
	m := o.View
	atts, problems := m.Attachments, m.Problems
	if atts == nil {
		atts = []message.Attachment{}
	}
	if problems == nil {
		problems = []string{}
	}
	writeJSON(w, http.StatusOK, messageJSON{
		ID:          o.Meta.ID,
		Headers:     headersJSON{From: m.From, To: m.To, Cc: m.Cc, Subject: m.Subject, Date: m.Date, MessageID: m.MessageID},
		Text:        m.Text,
		HTML:        message.SanitizeHTML(m.HTML),
		Attachments: atts,
		Signature:   o.Signature.String(),
		ReceivedAt:  o.Meta.CreatedAt,
		ExpiresAt:   o.Meta.ExpiresAt,
		Problems:    problems,
	})
}
