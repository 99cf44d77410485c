package portal

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// describeSent adds what the Sent page says in words (issue 13.3): the
// reference the sender's notes quote, the status in words, and the
// subject, opened from the copy sealed to the sender's own key (intake
// copies.go). Messages sent before that copy existed, or sealed to a key
// the sender has since replaced (password reset), show no subject.
func (s *Server) describeSent(ctx context.Context, v *viewer, items []sentItem) ([]sentItem, error) {
	ids := make([]string, len(items))
	for i := range items {
		ids[i] = items[i].ID
	}
	copies, err := s.Store.MessageCopies(ctx, store.CopySender, ids...)
	if err != nil {
		return nil, err
	}
	for i := range items {
		it := &items[i]
		it.Reference, it.Status = web.Ref(it.ID), sentStatus(it)
		c, ok := copies[it.ID]
		if !ok || len(c.Data) == 0 {
			continue
		}
		it.Attachments = c.Attachments
		plain, _, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: c.KeyPackets, Data: c.Data}, v.key, s.Gateway)
		if err != nil {
			it.SubjectLocked = true
			continue
		}
		var sum message.CopySummary
		if json.Unmarshal(plain, &sum) == nil {
			it.Subject, it.HasSubject = sum.Subject, true
		}
	}
	return items, nil
}

// sentStatus is where a message stands, in words.
func sentStatus(it *sentItem) string {
	switch it.State {
	case store.StateQuarantined:
		return "Held for review"
	case store.StateDenied:
		return "Not delivered: denied after review"
	case store.StateRecalled:
		return "Recalled"
	case "expired":
		if it.OpenedAt != nil {
			return "Expired (was opened)"
		}
		return "Expired without being opened"
	}
	switch {
	case it.RepliedAt != nil:
		return "Replied"
	case it.OpenedAt != nil:
		return "Opened"
	case it.NoticeFail:
		return "Notice could not be delivered"
	case it.Notified != nil:
		return "Recipient notified, not opened yet"
	}
	return "Waiting to notify the recipient"
}

// matchSent keeps the items whose subject, recipient, status or
// reference holds q (any case).
func matchSent(items []sentItem, q string) []sentItem {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return items
	}
	var out []sentItem
	for _, it := range items {
		for _, f := range []string{it.Subject, it.Recipient, it.Status, it.Reference, it.ID} {
			if strings.Contains(strings.ToLower(f), q) {
				out = append(out, it)
				break
			}
		}
	}
	return out
}

// maxSentQuery bounds the search text.
const maxSentQuery = 200

// sentSearch is the Sent page's search. It is a POST so that what the
// sender types (a subject's words, an address: PHI) is never in a URL.
func (s *Server) sentSearch(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Sent messages")
	d.Query = r.PostFormValue("q")
	if len(d.Query) > maxSentQuery {
		d.Query = d.Query[:maxSentQuery]
	}
	items, err := s.sentList(r, v)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Sent = matchSent(items, d.Query)
	d.SentTotal = len(items)
	s.render(w, r, http.StatusOK, "sent.html", d)
}

// recallConfirm asks before a recall (issue 13.3); the POST that follows
// redirects back to the list (sent.go, recallSubmit).
func (s *Server) recallConfirm(w http.ResponseWriter, r *http.Request, v *viewer) {
	items, err := s.sentList(r, v)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Recall a message")
	for i := range items {
		if items[i].ID == r.PathValue("id") {
			d.Sent = items[i : i+1]
		}
	}
	if len(d.Sent) == 0 || (d.Sent[0].State != store.StateDelivered && d.Sent[0].State != store.StateQuarantined) {
		d.Sent, d.Error = nil, "That message can't be recalled (it is not yours, or was already recalled or has expired)."
		s.render(w, r, http.StatusNotFound, "sent_recall.html", d)
		return
	}
	s.render(w, r, http.StatusOK, "sent_recall.html", d)
}
