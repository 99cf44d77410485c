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

// replyIn is a secure reply: the page's form (files uploaded) or the API's
// body (attachments in base64).
type replyIn struct {
	ID          string `json:"-"`
	Text        string `json:"text"`
	Attachments []struct {
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		Data        string `json:"data"` // base64
	} `json:"attachments"`
	files []message.Attachment
}

type replyOut struct {
	ReplyID string `json:"reply_id"`
}

// opReply sends the viewer's secure reply to message in.ID.
func (s *Server) opReply(r *http.Request, v *viewer, in replyIn) (replyOut, error) {
	rep := intake.Reply{Text: in.Text, Attachments: in.files}
	for _, a := range in.Attachments {
		data, err := base64.StdEncoding.DecodeString(a.Data)
		if err != nil {
			return replyOut{}, refused(http.StatusBadRequest, "bad_request", "Attachment data must be base64.", err)
		}
		rep.Attachments = append(rep.Attachments, message.Attachment{Filename: a.Filename, ContentType: a.ContentType, Data: data})
	}
	replyID, err := s.sendReply(r, v, in.ID, rep)
	if msg, ok := replyProblem(err); ok {
		oe := refused(http.StatusBadRequest, "reply_refused", msg, err)
		oe.Field = "text"
		return replyOut{}, oe
	}
	if errors.Is(err, errNoMessage) {
		return replyOut{}, refused(http.StatusNotFound, "not_found", noSuchMessage, err)
	}
	if err != nil {
		return replyOut{}, err
	}
	return replyOut{ReplyID: replyID}, nil
}

// noSuchMessage is the one answer for a message that does not exist, has
// expired or is someone else's (all three look the same).
const noSuchMessage = "This message does not exist, has expired, or is not addressed to you."

func (s *Server) replySubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := replyIn{ID: r.PathValue("id"), Text: r.PostFormValue("text")}
	// The form was read into memory within the route's bound (body.go).
	for _, f := range uploads(r, "files") {
		in.files = append(in.files, message.Attachment{Filename: f.Filename, ContentType: f.ContentType, Data: f.Data})
	}
	if _, err := s.opReply(r, v, in); err != nil {
		s.pageRefused(w, r, err, s.data("Secure message"), func(status int, d pageData) {
			if status == http.StatusNotFound {
				s.notFound(w, r)
				return
			}
			s.renderMessage(w, r, v, in.ID, d.Error)
		})
		return
	}
	seeOther(w, r, "/messages/"+in.ID+"?replied=1", "")
}

func (s *Server) apiReply(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in replyIn
	if !decodeJSON(w, r, &in) {
		return
	}
	in.ID = r.PathValue("id")
	out, err := s.opReply(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
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

type passcodeIn struct {
	ID   string `json:"-"`
	Code string `json:"code"`
}

// opPasscode accepts the passcode of message in.ID; wrong guesses count
// towards that message's passcode lock-out (checkPasscode).
func (s *Server) opPasscode(r *http.Request, v *viewer, in passcodeIn) (struct{}, error) {
	err := s.checkPasscode(r, v, in.ID, in.Code)
	if errors.Is(err, errNoMessage) {
		return struct{}{}, refused(http.StatusNotFound, "not_found", noSuchMessage, err)
	}
	if err != nil {
		err = s.signInRefused(err)
		if oe := asRefusal(err); oe != nil {
			oe.Msg = strings.Replace(oe.Msg, "from your authenticator app, or one of your recovery codes", "the sender gave you", 1)
		}
		return struct{}{}, err
	}
	return struct{}{}, nil
}

func (s *Server) passcodeSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := passcodeIn{ID: r.PathValue("id"), Code: r.PostFormValue("code")}
	if _, err := s.opPasscode(r, v, in); err != nil {
		d := s.data("Enter the passcode")
		d.SignedIn, d.ID = true, in.ID
		s.pageRefused(w, r, err, d, func(status int, d pageData) {
			if status == http.StatusNotFound {
				s.notFound(w, r)
				return
			}
			s.render(w, r, status, "passcode.html", d)
		})
		return
	}
	http.Redirect(w, r, "/messages/"+in.ID, http.StatusSeeOther)
}

func (s *Server) apiPasscode(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in passcodeIn
	if !decodeJSON(w, r, &in) {
		return
	}
	in.ID = r.PathValue("id")
	_, err := s.opPasscode(r, v, in)
	s.apiAnswer(w, r, http.StatusNoContent, nil, err)
}
