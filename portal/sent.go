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
	return out, nil
}

func (s *Server) apiSent(w http.ResponseWriter, r *http.Request, v *viewer) {
	items, err := s.sentList(r, v)
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": items})
}

// recall withdraws a message its sender sent: the recipient sees that it
// was recalled, not its content; the ciphertext is deleted by the purge.
// The message.recall entry commits in the recall's transaction.
func (s *Server) recall(r *http.Request, v *viewer, id string) error {
	b, err := audit.Prepare(r.Context(), s.Audit, audit.Entry{Actor: v.user.ID, IP: info(r).ip,
		Action: "message.recall", ObjectType: "message", ObjectID: id, Outcome: audit.OK})
	if err != nil {
		return err
	}
	if err := s.Store.Recall(r.Context(), id, v.user.ID, b.Func()); err != nil {
		return err
	}
	s.Log.InfoContext(r.Context(), "message recalled", "by", v.user.ID, "message", id, "ip", info(r).ip)
	err = b.Committed(r.Context())
	if m, gerr := s.Store.MessageMeta(r.Context(), id); gerr == nil {
		s.publishChange(r.Context(), events.MessageRecalled, m)
	}
	return err
}

func (s *Server) apiRecall(w http.ResponseWriter, r *http.Request, v *viewer) {
	err := s.recall(r, v, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no message of yours with that id can be recalled")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": r.PathValue("id"), "state": store.StateRecalled})
}

func (s *Server) sentPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderSent(w, r, s.data("Sent messages"))
}

func (s *Server) renderSent(w http.ResponseWriter, r *http.Request, d pageData) {
	v := viewerOf(r)
	items, err := s.sentList(r, v)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Sent = items
	s.render(w, r, http.StatusOK, "sent.html", d)
}

func (s *Server) recallSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Sent messages")
	if err := s.recall(r, v, r.PathValue("id")); errors.Is(err, store.ErrNotFound) {
		d.Error = "That message can't be recalled (it is not yours, or was already recalled)."
	} else if err != nil {
		s.fail(w, r, err)
		return
	} else {
		d.Notice = "Recalled. The recipient now sees that the message was withdrawn."
	}
	s.renderSent(w, r, d)
}
