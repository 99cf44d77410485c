package portal

import (
	"errors"
	"net/http"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/store"
)

// sentItem is one message on the sender's "sent" page: where it stands for
// its recipient. Status comes from the message row and its audit history.
type sentItem struct {
	ID         string     `json:"id"`
	Recipient  string     `json:"recipient"`
	SentAt     time.Time  `json:"sent_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	State      string     `json:"state"` // delivered, quarantined, denied, recalled, expired
	Notified   *time.Time `json:"notified,omitempty"`
	NoticeFail bool       `json:"notice_failed,omitempty"`
	OpenedAt   *time.Time `json:"opened_at,omitempty"`
	OpenedFrom string     `json:"opened_from,omitempty"`
	RepliedAt  *time.Time `json:"replied_at,omitempty"`
	Rule       string     `json:"rule"`
	// In words, for the page and the API (sentview.go, issue 13.3).
	Reference     string `json:"reference"`
	Status        string `json:"status"`
	Subject       string `json:"subject,omitempty"`
	HasSubject    bool   `json:"-"`
	SubjectLocked bool   `json:"subject_locked,omitempty"` // sealed to a key since replaced
	Attachments   int    `json:"attachments,omitempty"`
}

func (s *Server) sentList(r *http.Request, v *viewer) ([]sentItem, error) {
	msgs, err := s.Store.ListSent(r.Context(), v.user.ID, 200)
	if err != nil {
		return nil, err
	}
	out := make([]sentItem, 0, len(msgs))
	for _, m := range msgs {
		it := sentItem{ID: m.ID, SentAt: m.CreatedAt, ExpiresAt: m.ExpiresAt, State: m.State, Rule: m.Policy}
		if it.State == store.StateDelivered && !s.now().Before(m.ExpiresAt) {
			it.State = "expired"
		}
		if u, err := s.Store.UserByID(r.Context(), m.RecipientID); err == nil {
			it.Recipient, _ = s.Identity.Email(u)
		}
		if s.Trail != nil {
			hist, err := s.Trail.History(r.Context(), "message", m.ID)
			if err != nil {
				return nil, err
			}
			for _, e := range hist {
				t := e.Time
				switch {
				case e.Action == "notice.send" && e.Details["kind"] != "new-message":
					// a note to the sender, not the recipient's notice
				case e.Action == "notice.send" && e.Outcome == "ok" && it.Notified == nil:
					it.Notified = &t
				case e.Action == "notice.send" && e.Outcome == "failed":
					it.NoticeFail = true
				case e.Action == "message.read" && e.Outcome == "ok" && it.OpenedAt == nil:
					it.OpenedAt, it.OpenedFrom = &t, e.IP
				case e.Action == "message.reply" && e.Outcome == "ok" && it.RepliedAt == nil:
					it.RepliedAt = &t
				}
			}
		}
		out = append(out, it)
	}
	return s.describeSent(r.Context(), v, out)
}

type sentOut struct {
	Messages []sentItem `json:"messages"`
}

// opSentList is the sender's portal messages, newest first, with where
// each stands (sentList).
func (s *Server) opSentList(r *http.Request, v *viewer, _ struct{}) (sentOut, error) {
	items, err := s.sentList(r, v)
	return sentOut{Messages: items}, err
}

func (s *Server) apiSent(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opSentList(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

type recallIn struct{ ID string }

type recallOut struct {
	Message string `json:"message"`
	State   string `json:"state"`
}

// opRecall withdraws a message its sender sent: the recipient sees that it
// was recalled, not its content; the ciphertext is deleted by the purge.
// The message.recall entry commits in the recall's transaction.
func (s *Server) opRecall(r *http.Request, v *viewer, in recallIn) (recallOut, error) {
	b, err := audit.Prepare(r.Context(), s.Audit, audit.Entry{Actor: v.user.ID, IP: info(r).ip,
		Action: "message.recall", ObjectType: "message", ObjectID: in.ID, Outcome: audit.OK})
	if err != nil {
		return recallOut{}, err
	}
	err = s.Store.Recall(r.Context(), in.ID, v.user.ID, b.Func())
	if errors.Is(err, store.ErrNotFound) {
		return recallOut{}, refused(http.StatusNotFound, "not_found",
			"That message can't be recalled (it is not yours, or was already recalled).", err)
	}
	if err != nil {
		return recallOut{}, err
	}
	s.Log.InfoContext(r.Context(), "message recalled", "by", v.user.ID, "message", in.ID, "ip", info(r).ip)
	err = b.Committed(r.Context())
	if m, gerr := s.Store.MessageMeta(r.Context(), in.ID); gerr == nil {
		s.publishChange(r.Context(), events.MessageRecalled, m)
	}
	return recallOut{Message: in.ID, State: store.StateRecalled}, err
}

func (s *Server) apiRecall(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opRecall(r, v, recallIn{ID: r.PathValue("id")})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

// sentNotices are the Sent page's notices after a change (seeOther).
var sentNotices = map[string]string{
	"recalled": "Recalled. The recipient now sees that the message was withdrawn.",
	"resent":   "The recipient will get the notice again shortly.",
}

func (s *Server) sentPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Sent messages")
	d.Notice = doneNotice(r, sentNotices)
	s.renderSent(w, r, d)
}

func (s *Server) renderSent(w http.ResponseWriter, r *http.Request, d pageData) {
	s.renderSentStatus(w, r, http.StatusOK, d)
}

func (s *Server) renderSentStatus(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	out, err := s.opSentList(r, viewerOf(r), struct{}{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Sent = out.Messages
	s.render(w, r, status, "sent.html", d)
}

func (s *Server) recallSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if _, err := s.opRecall(r, v, recallIn{ID: r.PathValue("id")}); err != nil {
		s.pageRefused(w, r, err, s.data("Sent messages"), func(status int, d pageData) { s.renderSentStatus(w, r, status, d) })
		return
	}
	seeOther(w, r, "/sent", "recalled")
}
