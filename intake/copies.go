package intake

import (
	"context"
	"encoding/json"
	"fmt"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// Copies of a message for others than its recipient (issue 13.2, 13.3;
// docs/security.md "Sender and reviewer copies"). Both are sealed to keys
// whose private halves the server cannot open alone (a password-protected
// account key, the escrow key), so the server still cannot read a claimed
// recipient's mail on its own:
//   - the sender's copy: the subject, sealed to the sender's own account key
//     and the escrow key, for the sender's Sent page;
//   - the reviewers' copy of a held message: subject and a text preview,
//     sealed to the account key of every active admin who has set a
//     password (at most MaxReviewers) and the escrow key; deleted when the
//     hold is decided.

// PreviewChars is how much of the text a reviewer's copy holds.
const PreviewChars = 600

// MaxReviewers bounds the keys one reviewers' copy is sealed to (invariant
// 7): the first admins by account age.
const MaxReviewers = 50

// sideCopies are sealed once per message and shared by every recipient's
// row (the same bytes: same keys, same content).
type sideCopies struct {
	sender      *pcrypto.Sealed // nil: the sender has no key of their own
	review      *pcrypto.Sealed // nil: nothing is held, or no reviewer
	attachments int
}

// sealable reports whether u's key is one only its owner can open: an
// active account protected by its password (a pending account's key is
// wrapped under the server's master key).
func sealable(u *store.User) bool {
	return u != nil && u.Status == store.StatusActive && u.KeyWrap == store.KeyWrapPassword && len(u.PublicKey) > 0
}

func (in *Intake) sealCopies(ctx context.Context, env Envelope, view *message.View, held bool) (*sideCopies, error) {
	c := &sideCopies{attachments: len(view.Attachments)}
	if sealable(env.Sender) {
		pub, err := in.Identity.PublicKey(env.Sender)
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(message.CopySummary{Subject: view.Subject})
		if c.sender, err = pcrypto.Seal(b, in.Keys.Gateway, pub, in.Keys.Escrow); err != nil {
			return nil, fmt.Errorf("seal sender copy: %w", err)
		}
	}
	if !held {
		return c, nil
	}
	admins, err := in.Store.ListUsers(ctx, store.RoleAdmin)
	if err != nil {
		return nil, err
	}
	keys := []*pcrypto.Key{in.Keys.Escrow}
	for i := range admins {
		if len(keys) > MaxReviewers {
			break
		}
		if !sealable(&admins[i]) {
			continue
		}
		pub, err := in.Identity.PublicKey(&admins[i])
		if err != nil {
			return nil, err
		}
		keys = append(keys, pub)
	}
	if len(keys) == 1 {
		return c, nil // no admin has a key yet: the page says so
	}
	b, _ := json.Marshal(message.CopySummary{Subject: view.Subject, Preview: view.Preview(PreviewChars)})
	if c.review, err = pcrypto.Seal(b, in.Keys.Gateway, keys...); err != nil {
		return nil, fmt.Errorf("seal review copy: %w", err)
	}
	return c, nil
}

// forMessage returns the copies of one stored message.
func (c *sideCopies) forMessage(id string, held bool) []store.MessageCopy {
	if c == nil {
		return nil
	}
	var out []store.MessageCopy
	if c.sender != nil {
		out = append(out, store.MessageCopy{MessageID: id, Kind: store.CopySender,
			KeyPackets: c.sender.KeyPackets, Data: c.sender.Data, Attachments: c.attachments})
	}
	if held && c.review != nil {
		out = append(out, store.MessageCopy{MessageID: id, Kind: store.CopyReview,
			KeyPackets: c.review.KeyPackets, Data: c.review.Data, Attachments: c.attachments})
	}
	if held && c.review == nil {
		// The count still helps a reviewer without a preview.
		out = append(out, store.MessageCopy{MessageID: id, Kind: store.CopyReview, KeyPackets: []byte{}, Data: []byte{},
			Attachments: c.attachments})
	}
	return out
}

// heldNote tells the sender at once that a message is held for review
// (issue 13.2). PHI-free: the time, the message's reference (as the Sent
// page shows it) and the rule's name; never the subject or recipient.
func (in *Intake) heldNote(env Envelope, m store.Message, rule string) (store.OutboxItem, error) {
	text := fmt.Sprintf("The secure message you sent on %s (reference %s) is held for review by the organisation's "+
		"data-sharing policy (rule %q). An administrator will approve or deny it, and you will get another note then. "+
		"Your Sent page shows it under the same reference: %s/sent",
		web.When(m.CreatedAt, in.Opts.Zone), web.Ref(m.ID), rule, in.Opts.PublicURL)
	return notify.NewItem(in.Keys, notify.KindSenderNote, notify.Notice{To: env.From, Alert: text}, env.Sender.ID, m.ID, in.now())
}
