package portal

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/store"
)

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	Reason  string `json:"reason,omitempty"` // why a session ended
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

// reason is the text of a refusal the identity package explains to the
// user (a weak password, a refused key, a wrong escrow passphrase), without
// the package prefix.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), "identity: ")
}

func (s *Server) apiFail(w http.ResponseWriter, r *http.Request, err error) {
	if s.unavailableFor(w, r, err) || s.busyFor(w, r, err) {
		return
	}
	s.Log.ErrorContext(r.Context(), "api request failed", "route", r.Pattern, "err", err)
	writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal",
		Message: "the request could not be completed; try again or contact support with the reference", Ref: info(r).cid})
}

// decodeJSON decodes a request's JSON body, which its route has bounded
// (body.go): 413 past the bound, 415 for another type, 400 if malformed.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeJSONError(w, http.StatusUnsupportedMediaType, "bad_request", "send Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			jsonTooLarge(w, mbe.Limit)
			return false
		}
		writeJSONError(w, http.StatusBadRequest, "bad_request", "the request body is not valid JSON for this call")
		return false
	}
	return true
}

type userJSON struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

// signInJSON answers a sign-in step; Next says what the client must do
// before the session may read messages: "2fa" (send a code to
// /api/v1/login/2fa), "enrol" (set up an authenticator app with
// /api/v1/account/2fa/setup), or "" (done).
type signInJSON struct {
	User userJSON `json:"user"`
	Next string   `json:"next"`
}

func nextStep(u *store.User, mfaDone bool) string {
	switch {
	case mfaDone:
		return ""
	case len(u.TOTPSecretEnc) > 0:
		return "2fa"
	}
	return "enrol"
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in signInIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opSignIn(r, v, in)
	if err == nil {
		s.setSessionCookie(w, out.token)
		setDeviceCookie(w, out.device)
	}
	forgetDeviceOnFailure(w, r, err)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiSecondFactor(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in codeIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opSecondFactor(r, v, in)
	if err == nil && out.token != "" {
		s.setSessionCookie(w, out.token)
	}
	if err == nil {
		setDeviceCookie(w, out.device)
	}
	forgetDeviceOnFailure(w, r, err)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiClaim(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in newPasswordIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opClaim(r, v, in)
	if err == nil {
		s.setSessionCookie(w, out.token)
	}
	s.apiAnswer(w, r, http.StatusOK, out.signedIn, err)
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request, v *viewer) {
	_, err := s.opSignOut(r, v, struct{}{})
	if err == nil {
		clearSessionCookie(w)
	}
	s.apiAnswer(w, r, http.StatusNoContent, nil, err)
}

func (s *Server) apiResetRequest(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in resetRequestIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opResetRequest(r, v, in)
	s.apiAnswer(w, r, http.StatusAccepted, out, err)
}

func (s *Server) apiResetComplete(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in newPasswordIn
	if !decodeJSON(w, r, &in) {
		return
	}
	_, err := s.opResetComplete(r, v, in)
	s.apiAnswer(w, r, http.StatusNoContent, nil, err)
}

func (s *Server) apiMessages(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opInbox(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

type messageJSON struct {
	ID          string               `json:"id"`
	Headers     headersJSON          `json:"headers"`
	Text        string               `json:"text"`
	HTML        string               `json:"html"`
	Attachments []message.Attachment `json:"attachments"`
	Signature   string               `json:"signature"`
	SentBy      string               `json:"sent_by,omitempty"` // the account that submitted it over SMTP
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
	o, err := s.opOpenMessage(r, v, openIn{ID: r.PathValue("id"), What: "read"})
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	mj := messageView(o)
	mj.SentBy = s.sentBy(r.Context(), o.Meta)
	writeJSON(w, http.StatusOK, mj)
}

func messageView(o *opened) messageJSON {
	m := o.View
	atts, problems := m.Attachments, m.Problems
	if atts == nil {
		atts = []message.Attachment{}
	}
	if problems == nil {
		problems = []string{}
	}
	return messageJSON{
		ID:          o.Meta.ID,
		Headers:     headersJSON{From: m.From, To: m.To, Cc: m.Cc, Subject: m.Subject, Date: m.Date, MessageID: m.MessageID},
		Text:        m.Text,
		HTML:        message.SanitizeHTML(m.HTML),
		Attachments: atts,
		Signature:   o.Signature.String(),
		ReceivedAt:  o.Meta.CreatedAt,
		ExpiresAt:   o.Meta.ExpiresAt,
		Problems:    problems,
	}
}
