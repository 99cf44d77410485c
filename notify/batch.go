package notify

// Issue 10.4: which channels a "you have a secure message" notice takes,
// and the batching of several messages into one notice per window. The
// batching itself is done by the store, in the message's transaction
// (store/prefs.go); this file names the batches and applies the choices.

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/phigate/phigate/store"
)

// What an account may choose to be told by.
const (
	ChoiceEmail = "email"
	ChoicePush  = "push"
	ChoiceBoth  = "both"
)

// DefaultBatchWindow is how long later messages wait to be announced
// together after a notice.
const DefaultBatchWindow = 10 * time.Minute

// ValidChoice says whether c is one of the choices.
func ValidChoice(c string) bool {
	return c == ChoiceEmail || c == ChoicePush || c == ChoiceBoth
}

// ErrBadChoice is a choice that is not one of the three.
var ErrBadChoice = errors.New("notify: channels must be email, push or both")

// Prefs applies the accounts' choices and the organisation's rules.
type Prefs struct {
	Store store.PrefsStore
	// Default is the choice of accounts that made none (ChoiceBoth if "").
	Default string
	// RequireEmail keeps email on whatever an account chooses.
	RequireEmail bool
	// Window is the batching window (0: no batching).
	Window time.Duration
}

// PrefsView is what the account page shows.
type PrefsView struct {
	Choice       string `json:"channels"` // the account's, or the default
	Chosen       bool   `json:"chosen"`   // false: the organisation's default applies
	Default      string `json:"default"`
	RequireEmail bool   `json:"email_required"`
}

func (p *Prefs) fallback() string {
	if ValidChoice(p.Default) {
		return p.Default
	}
	return ChoiceBoth
}

// View returns userID's choice as the account page shows it.
func (p *Prefs) View(ctx context.Context, userID string) (PrefsView, error) {
	c, err := p.Store.NotifyChannels(ctx, userID)
	if err != nil {
		return PrefsView{}, err
	}
	v := PrefsView{Choice: c, Chosen: c != "", Default: p.fallback(), RequireEmail: p.RequireEmail}
	if !ValidChoice(c) {
		v.Choice, v.Chosen = v.Default, false
	}
	return v, nil
}

// Channels says whether userID's notices go by email and by push. An
// account that may not turn email off gets it whatever it chose.
func (p *Prefs) Channels(ctx context.Context, userID string) (email, push bool, err error) {
	if p == nil {
		return true, true, nil
	}
	v, err := p.View(ctx, userID)
	if err != nil {
		return false, false, err
	}
	return v.Choice != ChoicePush || p.RequireEmail, v.Choice != ChoiceEmail, nil
}

// batchEmail names the batch of an account's email notices.
func (p *Prefs) batchEmail(it *store.OutboxItem) {
	if p != nil && p.Window > 0 {
		it.Batch, it.Window = "email:"+it.UserID, p.Window
	}
}

// batchPush names the batch of one device's push rows: each device gets
// its first push at once, whatever the others got.
func (p *Prefs) batchPush(keys Sealer, it *store.OutboxItem) error {
	if p == nil || p.Window == 0 {
		return nil
	}
	plain, err := keys.OpenField(PayloadPurpose(it.ID), it.Payload)
	if err != nil {
		return err
	}
	var n PushNotice
	if err := json.Unmarshal(plain, &n); err != nil {
		return err
	}
	it.Batch, it.Window = "push:"+n.Subscription, p.Window
	return nil
}

// MessageNotices chooses among a new message's notice rows (email, and
// pushes, one per device) those the account wants, and names their
// batches. With push chosen but no device to push to, email goes anyway:
// a message nobody hears of is a message not read.
func (p *Prefs) MessageNotices(ctx context.Context, keys Sealer, userID string, email store.OutboxItem, pushes []store.OutboxItem) ([]store.OutboxItem, error) {
	wantEmail, wantPush, err := p.Channels(ctx, userID)
	if err != nil {
		return nil, err
	}
	if !wantPush {
		pushes = nil
	}
	var out []store.OutboxItem
	if wantEmail || len(pushes) == 0 {
		p.batchEmail(&email)
		out = append(out, email)
	}
	for _, it := range pushes {
		if err := p.batchPush(keys, &it); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// SetChoice records userID's choice, audited by the store with it.
func (p *Prefs) SetChoice(ctx context.Context, userID, choice string, now time.Time, audit store.AuditFunc) error {
	if !ValidChoice(choice) {
		return ErrBadChoice
	}
	return p.Store.SetNotifyChannels(ctx, userID, choice, now, audit)
}
