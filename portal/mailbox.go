package portal

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/phigate/phigate/policy"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/store"
)

var (
	errNoMessage = errors.New("no such message")
	errLocked    = errors.New("message waiting for recovery")
	errRecalled  = errors.New("message recalled by its sender")
	errNeeds2FA  = errors.New("message needs a second factor")
	errPasscode  = errors.New("message needs its passcode")
)

// listItem is one inbox row, decrypted from the separately sealed summary so
// the listing never opens whole bodies.
type listItem struct {
	ID          string    `json:"id"`
	From        string    `json:"from"`
	Subject     string    `json:"subject"`
	Date        time.Time `json:"date"`
	ReceivedAt  time.Time `json:"received_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Read        bool      `json:"read"`
	Attachments int       `json:"attachments"`
	Size        int64     `json:"size"`
	Signature   string    `json:"signature"`
	// Locked: addressed to a key lost in a password reset; readable again
	// after the organisation's escrow-assisted recovery.
	Locked bool `json:"locked"`
	// Recalled: the sender withdrew it; its content is no longer shown.
	Recalled bool `json:"recalled"`
}

func (s *Server) list(ctx context.Context, v *viewer) ([]listItem, error) {
	msgs, err := s.Store.ListMessages(ctx, v.rec.UserID, s.now())
	if err != nil {
		return nil, err
	}
	locked := func(m *store.Message) bool { return m.KeyFpr != "" && m.KeyFpr != v.user.KeyFpr }
	sums := openSummaries(msgs, func(m *store.Message) bool { return m.State != store.StateRecalled && !locked(m) }, v.key, s.Gateway, s.verifiedSummaries())
	out := make([]listItem, 0, len(msgs))
	for i, m := range msgs {
		it := listItem{ID: m.ID, ReceivedAt: m.CreatedAt, ExpiresAt: m.ExpiresAt, Read: m.ReadAt != nil, Size: m.Size}
		if m.State == store.StateRecalled {
			it.Recalled, it.Date, it.Signature, it.Subject = true, m.CreatedAt, "recalled", "(recalled by the sender)"
			out = append(out, it)
			continue
		}
		if locked(&m) {
			it.Locked, it.Date, it.Signature = true, m.CreatedAt, "locked"
			out = append(out, it)
			continue
		}
		plain, sig, err := sums[i].plain, sums[i].sig, sums[i].err
		if err != nil {
			// Show the row rather than hide a message we hold.
			s.Log.ErrorContext(ctx, "summary unreadable", "message", m.ID, "err", err)
			it.Subject, it.Signature = "(this message's summary could not be read)", "error"
		} else {
			var sum message.Summary
			if err := json.Unmarshal(plain, &sum); err == nil {
				it.From, it.Subject, it.Date, it.Attachments = sum.From, sum.Subject, sum.Date, sum.Attachments
			}
			it.Signature = sig.String()
		}
		if it.Date.IsZero() {
			it.Date = m.CreatedAt
		}
		out = append(out, it)
	}
	return out, nil
}

// opened is one decrypted, parsed message.
type opened struct {
	Meta      *store.Message
	View      *message.View
	Signature pcrypto.SignatureStatus
}

// open decrypts one message for v. A message of someone else is "not
// found", so its existence is not revealed.
func (s *Server) open(ctx context.Context, v *viewer, id string) (*opened, error) {
	m, err := s.Store.GetMessage(ctx, id)
	if err == nil && m.RecipientID == v.rec.UserID && m.State == store.StateDelivered && m.PurgedAt != nil {
		return nil, disposedError{at: *m.PurgedAt} // issue 14.4: say so, not "not found"
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && (m.RecipientID != v.rec.UserID || !s.now().Before(m.ExpiresAt))) {
		return nil, errNoMessage
	}
	if err != nil {
		return nil, err
	}
	if m.State == store.StateRecalled {
		return nil, errRecalled
	}
	if m.KeyFpr != "" && m.KeyFpr != v.user.KeyFpr {
		return nil, errLocked
	}
	// A session has proved a second factor when the account has one and
	// the session is marked done (for accounts without one, "done" only
	// means "not needed").
	if decisionOf(m).Require2FA && (len(v.user.TOTPSecretEnc) == 0 || !v.rec.MFA) {
		return nil, errNeeds2FA
	}
	if len(m.PasscodeHash) > 0 && m.PasscodeOK == nil {
		return nil, errPasscode
	}
	plain, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.KeyPackets, Data: m.Body}, v.key, s.Gateway)
	if err != nil {
		return nil, err
	}
	return &opened{Meta: m, View: message.Parse(plain), Signature: sig}, nil
}

// sentBy is the address of the account that submitted m (authenticated
// over SMTP, recorded with the message by the gateway, not taken from its
// headers): shown beside the "verified" line (issue 8.6). Empty if it
// cannot be read; the page still shows the message.
func (s *Server) sentBy(ctx context.Context, m *store.Message) string {
	u, err := s.Store.UserByID(ctx, m.SenderID)
	if err != nil {
		s.Log.WarnContext(ctx, "message sender", "message", m.ID, "err", err)
		return ""
	}
	addr, err := s.Identity.Email(u)
	if err != nil {
		s.Log.WarnContext(ctx, "message sender", "message", m.ID, "err", err)
		return ""
	}
	return addr
}

// decisionOf reads the policy decision recorded on a message.
func decisionOf(m *store.Message) policy.Decision {
	var d policy.Decision
	_ = json.Unmarshal([]byte(m.Decision), &d)
	return d
}
