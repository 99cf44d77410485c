package portal

// Issue 13.9: the reference of each notice an account was sent is shown
// again after sign-in, so a patient can match the email they got with
// the portal they reached by typing its address (or from the email).

import (
	"context"
	"time"

	"github.com/phigate/phigate/notify"
)

// noticeRefsShown bounds the list: the latest few notices are the ones a
// person has in their mailbox and wants to check.
const noticeRefsShown = 3

type noticeRefView struct {
	Reference string    `json:"reference"`
	What      string    `json:"about"` // the kind of notice in words
	At        time.Time `json:"at"`    // when it was sent (made, if not sent yet)
}

var noticeRefWhat = map[string]string{
	notify.KindNewMessage:    "new message",
	notify.KindClaimLink:     "new link",
	notify.KindPasswordReset: "password reset",
}

// noticeRefs returns the references of userID's latest notices. A fault
// only loses the banner, never the page: it is logged and nil returned.
func (s *Server) noticeRefs(ctx context.Context, userID string) []noticeRefView {
	refs, err := s.Store.NoticeReferences(ctx, userID, "", noticeRefsShown)
	if err != nil {
		s.Log.ErrorContext(ctx, "notice references", "err", err)
		return nil
	}
	out := make([]noticeRefView, 0, len(refs))
	for _, n := range refs {
		at := n.CreatedAt
		if n.SentAt != nil {
			at = *n.SentAt
		}
		out = append(out, noticeRefView{Reference: n.Reference, What: noticeRefWhat[n.Kind], At: at})
	}
	return out
}
