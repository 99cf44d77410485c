package portal

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/totp"
)

// replyView is one of the recipient's own replies, shown under the message.
type replyView struct {
	ID          string    `json:"id"`
	Date        time.Time `json:"date"`
	Text        string    `json:"text"`
	Attachments []string  `json:"attachments"`
}

// replies decrypts the recipient's copies of their replies to id.
func (s *Server) replies(r *http.Request, v *viewer, id string) ([]replyView, error) {
	ms, err := s.Store.Replies(r.Context(), v.user.ID, id)
	if err != nil {
		return nil, err
	}
	out := make([]replyView, 0, len(ms))
	for _, m := range ms {
		if len(m.Body) == 0 {
			continue // purged with the message
		}
		plain, _, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.KeyPackets, Data: m.Body}, v.key, s.Gateway)
		if err != nil {
			continue // addressed to an earlier key (before a reset)
		}
		mv := message.Parse(plain)
		rv := replyView{ID: m.ID, Date: m.CreatedAt, Text: mv.Text, Attachments: []string{}}
		for _, a := range mv.Attachments {
			rv.Attachments = append(rv.Attachments, a.Filename)
		}
		out = append(out, rv)
	}
	return out, nil
}

// sendReply answers message id for v.
func (s *Server) sendReply(r *http.Request, v *viewer, id string, rep intake.Reply) (string, error) {
	o, err := s.open(r.Context(), v, id)
	if err != nil {
		return "", err
	}
	if o.Meta.ReplyTo != "" {
		return "", errNoMessage // a copy of one's own reply
	}
	return s.Intake.SendReply(r.Context(), v.user, o.Meta, o.View, rep, info(r).ip)
}

// replyProblem says what a person can do about a refused reply.
func replyProblem(err error) (string, bool) {
	switch {
	case errors.Is(err, intake.ErrReplyNotAllowed), errors.Is(err, intake.ErrReplyTooBig), errors.Is(err, intake.ErrReplyEmpty):
		return strings.ToUpper(err.Error()[:1]) + err.Error()[1:] + ".", true
	}
	return "", false
}

func (s *Server) replySubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	// The form was read into memory within the route's bound (body.go).
	rep := intake.Reply{Text: r.PostFormValue("text")}
	for _, f := range uploads(r, "files") {
		rep.Attachments = append(rep.Attachments, message.Attachment{Filename: f.Filename,
			ContentType: f.ContentType, Data: f.Data})
	}
	_, err := s.sendReply(r, v, id, rep)
	if msg, ok := replyProblem(err); ok {
		s.renderMessage(w, r, v, id, msg)
		return
	}
	if errors.Is(err, errNoMessage) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/messages/"+id+"?replied=1", http.StatusSeeOther)
}

func (s *Server) apiReply(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Text        string `json:"text"`
		Attachments []struct {
			Filename    string `json:"filename"`
			ContentType string `json:"content_type"`
			Data        string `json:"data"` // base64
		} `json:"attachments"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	rep := intake.Reply{Text: req.Text}
	for _, a := range req.Attachments {
		data, err := base64.StdEncoding.DecodeString(a.Data)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, "bad_request", "attachment data must be base64")
			return
		}
		rep.Attachments = append(rep.Attachments, message.Attachment{Filename: a.Filename, ContentType: a.ContentType, Data: data})
	}
	replyID, err := s.sendReply(r, v, r.PathValue("id"), rep)
	if msg, ok := replyProblem(err); ok {
		writeJSONError(w, http.StatusBadRequest, "reply_refused", msg)
		return
	}
	if errors.Is(err, errNoMessage) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such message")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"reply_id": replyID})
}

// checkPasscode accepts the passcode the sender gave the recipient out of
// band; wrong guesses count towards a lock-out of that message's passcode.
func (s *Server) checkPasscode(r *http.Request, v *viewer, id, code string) error {
	m, err := s.Store.GetMessage(r.Context(), id)
	if err != nil || m.RecipientID != v.user.ID || len(m.PasscodeHash) == 0 {
		return errNoMessage
	}
	if m.PasscodeOK != nil {
		return nil
	}
	acct, ip := "passcode:"+id, ipKey(info(r).ip)
	if err := s.Limiter.Check(r.Context(), acct, ip); err != nil {
		return err
	}
	want := s.Identity.Keys.PasscodeMAC(id, totp.Normalize(code))
	if !pcrypto.VerifierEqual(want, m.PasscodeHash) {
		s.Limiter.Failure(r.Context(), acct, ip)
		s.audit(r, "message.passcode", "message", id, "failed", nil)
		return identity.ErrBadCode
	}
	s.audit(r, "message.passcode", "message", id, "ok", nil)
	return s.Store.PasscodeGiven(r.Context(), id, s.now())
}

func (s *Server) passcodeSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	err := s.checkPasscode(r, v, id, r.PostFormValue("code"))
	if errors.Is(err, errNoMessage) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		d := s.data("Enter the passcode")
		d.SignedIn, d.ID = true, id
		if msg, ok := s.signInRefusal(err); ok {
			d.Error = strings.Replace(msg, "from your authenticator app, or one of your recovery codes", "the sender gave you", 1)
			s.render(w, r, http.StatusUnauthorized, "passcode.html", d)
			return
		}
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/messages/"+id, http.StatusSeeOther)
}

func (s *Server) apiPasscode(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Code string `json:"code"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	err := s.checkPasscode(r, v, r.PathValue("id"), req.Code)
	switch {
	case errors.Is(err, errNoMessage):
		writeJSONError(w, http.StatusNotFound, "not_found", "no such message with a passcode")
	case err != nil:
		s.apiRefuse(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
