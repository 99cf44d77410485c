// Package intake turns one accepted SMTP transaction into durable state:
// per recipient it applies the policy decision, relays onward or seals the
// message for the portal, and commits messages and their notices together.
// Only when Accept returns nil may the SMTP session answer 250.
package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/phigate/phigate/audit"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/policy"
	"github.com/phigate/phigate/quota"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/totp"
	"github.com/phigate/phigate/web"
)

type Options struct {
	Expiry    time.Duration // how long a portal message stays readable
	ClaimTTL  time.Duration // how long a claim link works
	PublicURL string        // portal base URL for links in notices
	// NotifyFrom and Hostname shape secure replies (envelope sender,
	// Message-ID domain).
	NotifyFrom string
	Hostname   string
	// Zone is the organisation's time zone for times in notes to the
	// sender (org.time_zone); nil: UTC.
	Zone *time.Location
}

type Intake struct {
	Store         store.Store
	Keys          *keys.Ring
	Identity      *identity.Service
	Policy        policy.Decider
	PGP           PGPBuilder     // nil: the pgp action fails temporarily
	RecipientKeys KeyLookup      // registered recipient keys; nil: nobody has one
	Detector      Detector       // nil: no content detectors
	Audit         audit.Recorder // nil: no trail (unit tests)
	Notifier      interface{ Kick() }
	Quota         *quota.Limits // per-account counts (issue 8.5); nil: none
	Stored        StoredBytes   // nil: no stored quota
	Limits        Limits
	Log           *slog.Logger
	Opts          Options
	Now           func() time.Time

	// Events hears each committed change, for open portal pages (issue
	// 10.1); nil: none.
	Events events.Publisher
	// Push queues the push channel's rows beside the email notice (issue
	// 10.3); nil: email only.
	Push *notify.Pusher
	// Prefs applies the accounts' choice of channels and batches notices
	// (issue 10.4); nil: email and push, each message its own notice.
	Prefs *notify.Prefs

	tally storedTally // stored bytes per sender between store reads
}

// Envelope is the SMTP envelope of one transaction, after AUTH.
type Envelope struct {
	IP        string // the submitting client's address, for the trail
	MessageID string // the message's Message-ID (set by Accept), for notes to the sender
	Sender    *store.User
	From      string
	To        []string

	copies *sideCopies // sealed for the sender and reviewers (copies.go)
}

// Result says what happened to each recipient class.
type Result struct {
	Relayed     int
	PGP         int
	Portal      int
	Quarantined int
	MessageIDs  []string
}

// Rejected is a policy refusal: the SMTP reply carries its code and reason.
type Rejected struct {
	Code     int
	Enhanced [3]int // RFC 3463; zero: 5.7.1 (delivery not authorized)
	Reason   string // safe to show the sender
	Rule     string
}

func (e *Rejected) Error() string { return "rejected by policy rule " + e.Rule + ": " + e.Reason }

// Detector counts clinical identifiers in a message (package detect). It
// scans the MIME tree message.Parse read (View.Root), so the message is
// parsed once for the view, the summary and the detectors.
type Detector interface {
	ScanView(v *message.View) map[string]int
}

// PGPBuilder turns a message into PGP/MIME for a recipient with a
// registered key (the queue then sends it).
type PGPBuilder interface {
	BuildPGP(ctx context.Context, from, to string, raw []byte) ([]byte, error)
}

// KeyLookup reports whether rcpt has a usable registered OpenPGP key.
type KeyLookup interface {
	HasKey(ctx context.Context, rcpt string) (bool, error)
}

func (in *Intake) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

// CheckRecipient decides for one recipient at RCPT time and returns a
// *Rejected when the policy refuses it already on the envelope.
func (in *Intake) CheckRecipient(ctx context.Context, sender *store.User, from, rcpt string) error {
	hasKey := false
	if in.RecipientKeys != nil {
		var err error
		if hasKey, err = in.RecipientKeys.HasKey(ctx, rcpt); err != nil {
			return err
		}
	}
	d, final := in.Policy.DecideEnvelope(policy.Input{Sender: from, SenderRole: sender.Role, Recipient: rcpt, RecipientHasKey: hasKey})
	if final && d.Action == policy.Reject {
		code := d.Then.Code
		if code == 0 {
			code = 550
		}
		return &Rejected{Code: code, Reason: d.Reason, Rule: d.Rule}
	}
	return nil
}

// facts are what the policy may know about the message v (parsed from
// raw), computed once.
func (in *Intake) facts(raw []byte, v *message.View) *policy.Facts {
	f := &policy.Facts{Subject: v.Subject}
	for _, a := range v.Attachments {
		f.Attachments = append(f.Attachments, policy.Attachment{Type: strings.ToLower(a.ContentType),
			Ext: policy.ExtOf(a.Filename), Size: a.Size})
	}
	if in.Detector != nil {
		f.Counts = in.Detector.ScanView(v)
	}
	return f
}

// plan is one recipient's decision.
type plan struct {
	rcpt string
	dec  policy.Decision
}

// Accept delivers raw to every envelope recipient as the policy decides.
// It returns nil only when every relay and PGP recipient was handed to the
// next hop and every portal or quarantined copy and its notice are
// committed. Any reject refuses the whole message (SMTP answers DATA once
// for all recipients), so nothing is half-sent.
func (in *Intake) Accept(ctx context.Context, env Envelope, raw []byte) (Result, error) {
	if err := in.checkMessage(env, raw); err != nil {
		return Result{}, err
	}
	view := message.Parse(raw)
	env.MessageID = view.MessageID
	facts := in.facts(raw, view)
	var relayTo []string
	var pgpTo, stored []plan
	for _, rcpt := range env.To {
		hasKey := false
		if in.RecipientKeys != nil {
			var err error
			if hasKey, err = in.RecipientKeys.HasKey(ctx, rcpt); err != nil {
				return Result{}, err
			}
		}
		d := in.Policy.Decide(policy.Input{Sender: env.From, SenderRole: env.Sender.Role, Recipient: rcpt,
			RecipientHasKey: hasKey, Facts: facts})
		in.Log.InfoContext(ctx, "policy decision", "recipient", logx.Addr(rcpt), "action", d.Action, "rule", d.Rule,
			"version", d.Version, "detectors", d.Detectors, "fallback", d.Fallback)
		if d.Action == policy.Reject {
			// The refusal is in the trail before the client hears it.
			if err := in.audit(ctx, env, "message.reject", "recipient", "", "refused", decisionDetails(rcpt, d)); err != nil {
				return Result{}, err
			}
		}
		switch d.Action {
		case policy.Reject:
			code := d.Then.Code
			if code == 0 {
				code = 550
			}
			return Result{}, &Rejected{Code: code, Reason: d.Reason, Rule: d.Rule}
		case policy.Relay:
			relayTo = append(relayTo, rcpt)
		case policy.PGP:
			pgpTo = append(pgpTo, plan{rcpt, d})
		case policy.Portal, policy.Quarantine:
			stored = append(stored, plan{rcpt, d})
		default:
			return Result{}, fmt.Errorf("policy rule %s: unsupported action %q", d.Rule, d.Action)
		}
	}
	if len(stored) > 0 {
		if err := in.checkStored(ctx, env.Sender, int64(len(raw))*int64(len(stored))); err != nil {
			return Result{}, err
		}
	}
	var res Result
	// Onward mail (relay, PGP/MIME) goes into the durable outbound queue,
	// committed with the portal copies in one transaction: the 250 covers
	// all of it, and the dispatcher retries TLS-only delivery with back-off.
	var onwardItems []store.OutboxItem
	now := in.now()
	if len(relayTo) > 0 {
		item, err := notify.NewOnwardItem(in.Keys, notify.Onward{From: env.From, To: relayTo, Raw: raw,
			ReportTo: env.From, MessageID: view.MessageID}, now)
		if err != nil {
			return res, err
		}
		onwardItems = append(onwardItems, item)
	}
	for _, p := range pgpTo {
		if in.PGP == nil {
			return res, errors.New("pgp: no PGP/MIME builder configured")
		}
		msg, err := in.PGP.BuildPGP(ctx, env.From, p.rcpt, raw)
		if err != nil {
			return res, fmt.Errorf("pgp: %w", err)
		}
		item, err := notify.NewOnwardItem(in.Keys, notify.Onward{From: env.From, To: []string{p.rcpt}, Raw: msg,
			ReportTo: env.From, MessageID: view.MessageID}, now)
		if err != nil {
			return res, err
		}
		onwardItems = append(onwardItems, item)
	}
	// The relay and PGP entries commit with the queued items.
	var onwardAudit []audit.Entry
	for _, rcpt := range relayTo {
		onwardAudit = append(onwardAudit, in.entry(ctx, env, "message.relay", "recipient", "", "queued", map[string]string{"recipient": rcpt}))
	}
	for _, p := range pgpTo {
		onwardAudit = append(onwardAudit, in.entry(ctx, env, "message.pgp", "recipient", "", "queued", decisionDetails(p.rcpt, p.dec)))
	}
	ids, err := in.storePortal(ctx, env, stored, raw, view, onward{items: onwardItems, audit: onwardAudit})
	if err != nil {
		return res, err
	}
	in.tally.add(env.Sender.ID, int64(len(raw))*int64(len(stored)))
	res.MessageIDs = ids
	for _, p := range stored {
		if p.dec.Action == policy.Quarantine {
			res.Quarantined++
		} else {
			res.Portal++
		}
	}
	res.Relayed, res.PGP = len(relayTo), len(pgpTo)
	if in.Notifier != nil {
		in.Notifier.Kick()
	}
	return res, nil
}

// onward is what a transaction queues for the next hop, with its entries.
type onward struct {
	items []store.OutboxItem
	audit []audit.Entry
}

// storePortal seals the portal and quarantined copies and commits them with
// the onward items and every entry that records them (message.accept,
// message.relay, message.pgp) in one transaction: a message is never stored
// unaudited, nor an entry written for a message that is not (issue 9.2).
func (in *Intake) storePortal(ctx context.Context, env Envelope, plans []plan, raw []byte, view *message.View, fwd onward) ([]string, error) {
	if len(plans) == 0 {
		if len(fwd.items) == 0 {
			return nil, nil
		}
		_, err := in.commit(ctx, store.Delivery{Outbox: fwd.items}, fwd.audit)
		return nil, err
	}
	summary, err := json.Marshal(view.Summary(int64(len(raw))))
	if err != nil {
		return nil, err
	}
	held := false
	for _, p := range plans {
		held = held || p.dec.Action == policy.Quarantine
	}
	if env.copies, err = in.sealCopies(ctx, env, view, held); err != nil {
		return nil, err
	}
	// The sealed copies are held in memory and committed in batches of at
	// most Limits.CommitBatchBytes (issue 8.5), not all at once: a message
	// to many recipients must not hold recipients x size sealed bytes. The
	// onward items and their entries go with the first batch. The 250
	// still comes only after the last; should a later batch fail, the
	// client's retry may repeat the earlier ones (a duplicate, never a loss).
	var ids []string
	for len(plans) > 0 {
		n := min(len(plans), in.batchOf(len(raw)))
		got, err := in.storeBatch(ctx, env, plans[:n], raw, summary, fwd)
		if err != nil {
			return nil, err
		}
		in.Log.DebugContext(ctx, "committed batch", "copies", n, "bytes", n*len(raw))
		ids, plans, fwd = append(ids, got...), plans[n:], onward{}
	}
	return ids, nil
}

// storeBatch seals one batch of copies and commits them.
func (in *Intake) storeBatch(ctx context.Context, env Envelope, plans []plan, raw, summary []byte, fwd onward) ([]string, error) {
	// A claim finishing between sealing and commit changes the recipient's
	// key; the store notices and we seal again to the new key.
	for attempt := 0; attempt < 3; attempt++ {
		d, ids, err := in.prepare(ctx, env, plans, raw, summary)
		if err != nil {
			return nil, err
		}
		d.Outbox = append(d.Outbox, fwd.items...)
		// Accepted and its policy decision, in the trail before 250.
		entries := make([]audit.Entry, 0, len(ids)+len(fwd.audit))
		for i, id := range ids {
			entries = append(entries, in.entry(ctx, env, "message.accept", "message", id, "ok", decisionDetails(plans[i].rcpt, plans[i].dec)))
		}
		retry, err := in.commit(ctx, d, append(entries, fwd.audit...))
		if retry {
			continue
		}
		if err != nil {
			return nil, err
		}
		in.publish(ctx, storedEvents(d.Messages)...)
		for i, id := range ids {
			in.Log.InfoContext(ctx, "stored", "message", id, "recipient", logx.Addr(plans[i].rcpt),
				"size", len(raw), "rule", plans[i].dec.Rule, "action", plans[i].dec.Action)
		}
		return ids, nil
	}
	return nil, errors.New("commit: recipient key kept changing")
}

// commit delivers d with entries sealed into its transaction; retry means
// a recipient's key changed meanwhile (seal again; err is then
// store.ErrKeyChanged).
func (in *Intake) commit(ctx context.Context, d store.Delivery, entries []audit.Entry) (retry bool, err error) {
	b, err := audit.Prepare(ctx, in.Audit, entries...)
	if err != nil {
		return false, err
	}
	d.Audit = b.Func()
	err = in.Store.Deliver(ctx, d)
	if errors.Is(err, store.ErrKeyChanged) {
		return true, err
	}
	if err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return false, b.Committed(ctx)
}

func (in *Intake) prepare(ctx context.Context, env Envelope, plans []plan, raw, summary []byte) (store.Delivery, []string, error) {
	var d store.Delivery
	var ids []string
	now := in.now()
	for _, p := range plans {
		u, err := in.Identity.EnsureRecipient(ctx, p.rcpt)
		if err != nil {
			return d, nil, fmt.Errorf("recipient account: %w", err)
		}
		pub, err := in.Identity.PublicKey(u)
		if err != nil {
			return d, nil, err
		}
		body, err := pcrypto.Seal(raw, in.Keys.Gateway, pub, in.Keys.Escrow)
		if err != nil {
			return d, nil, fmt.Errorf("seal: %w", err)
		}
		sum, err := pcrypto.Seal(summary, in.Keys.Gateway, pub, in.Keys.Escrow)
		if err != nil {
			return d, nil, fmt.Errorf("seal summary: %w", err)
		}
		decision, _ := json.Marshal(p.dec)
		m := store.Message{
			ID: store.NewID(), RecipientID: u.ID, SenderID: env.Sender.ID, KeyFpr: u.KeyFpr,
			CreatedAt: now, ExpiresAt: now.Add(min(in.expiry(p.dec), in.keepFor(p.dec))), DisposeAt: now.Add(in.keepFor(p.dec)), Size: int64(len(raw)), Policy: p.dec.Rule,
			KeyPackets: body.KeyPackets, Body: body.Data, SummaryKeys: sum.KeyPackets, Summary: sum.Data,
			Decision: string(decision), State: store.StateDelivered,
		}
		d.Messages = append(d.Messages, m)
		ids = append(ids, m.ID)
		d.Copies = append(d.Copies, env.copies.forMessage(m.ID, p.dec.Action == policy.Quarantine)...)
		if p.dec.Action == policy.Quarantine {
			// Held: no notice until an admin releases it (Release); the
			// sender hears at once that it waits (issue 13.2).
			m.State = store.StateQuarantined
			d.Messages[len(d.Messages)-1] = m
			note, err := in.heldNote(env, m, p.dec.Rule)
			if err != nil {
				return d, nil, err
			}
			d.Outbox = append(d.Outbox, note)
			continue
		}
		if p.dec.Passcode {
			// The sender gives the passcode to the recipient out of band
			// (phone, in person); only its keyed hash is kept.
			code := totp.RecoveryCodes(1)[0]
			d.Messages[len(d.Messages)-1].PasscodeHash = in.Keys.PasscodeMAC(m.ID, totp.Normalize(code))
			text := fmt.Sprintf("The secure message you sent on %s (reference %s, Message-ID <%s>) asks for a passcode at first opening: %s. "+
				"Give it to the recipient by phone or in person, not by email.", web.When(now, in.Opts.Zone), web.Ref(m.ID),
				env.MessageID, code)
			item, err := notify.NewItem(in.Keys, notify.KindPasscode, notify.Notice{To: env.From, Alert: text}, env.Sender.ID, m.ID, now)
			if err != nil {
				return d, nil, err
			}
			d.Outbox = append(d.Outbox, item)
		}
		notice, err := in.Notice(ctx, u, p.rcpt, m, now)
		if err != nil {
			return d, nil, err
		}
		d.ClaimTokens = append(d.ClaimTokens, notice.ClaimTokens...)
		d.Outbox = append(d.Outbox, notice.Outbox...)
	}
	return d, ids, nil
}

// keepFor is how long a message is kept before the purge disposes of it:
// its rule's retention (issue 14.4), or its read window. A retention
// shorter than the read window (which may come from portal.message_expiry,
// beyond the policy's sight) shortens the window to it.
func (in *Intake) keepFor(d policy.Decision) time.Duration {
	if r := d.RetainFor(); r > 0 {
		return r
	}
	return in.expiry(d)
}

func (in *Intake) expiry(d policy.Decision) time.Duration {
	if d.Then.ExpiryDays > 0 {
		return time.Duration(d.Then.ExpiryDays) * 24 * time.Hour
	}
	return in.Opts.Expiry
}

// Notice builds the "you have a secure message" notice for m: a claim link
// for a pending account, the sign-in link otherwise; and a push to each
// device the account turned notifications on for; as the account chose
// (Prefs).
func (in *Intake) Notice(ctx context.Context, u *store.User, rcpt string, m store.Message, now time.Time) (store.Delivery, error) {
	var d store.Delivery
	n := notify.Notice{To: keys.NormalizeAddr(rcpt), ExpiresAt: m.ExpiresAt, Link: in.Opts.PublicURL + "/login"}
	if u.Status == store.StatusPending {
		raw, tok := in.Identity.NewClaimToken(u.ID, in.Opts.ClaimTTL)
		d.ClaimTokens = append(d.ClaimTokens, tok)
		n.Link, n.Claim, n.LinkExpiresAt = in.Opts.PublicURL+"/claim/"+raw, true, tok.ExpiresAt
	}
	item, err := notify.NewItem(in.Keys, notify.KindNewMessage, n, u.ID, m.ID, now)
	if err != nil {
		return d, err
	}
	var pushes []store.OutboxItem
	if in.Push != nil && u.Status == store.StatusActive {
		if pushes, err = in.Push.Items(ctx, u.ID, m.ID, now); err != nil {
			return d, err
		}
	}
	// The account's choice of channels, and batching (issue 10.4).
	d.Outbox, err = in.Prefs.MessageNotices(ctx, in.Keys, u.ID, item, pushes)
	return d, err
}

// Decider is who decides on a quarantined message, for the trail.
type Decider struct {
	UserID string
	IP     string
	// Note is the decider's reason, kept (encrypted) in the decision's
	// audit entry; never sent to anyone (issue 13.2).
	Note string
}

// Release approves or denies a quarantined message. Approving makes it
// visible to its recipient and sends the notice; the sender's note and the
// quarantine.approve or quarantine.deny entry commit in the same
// transaction.
func (in *Intake) Release(ctx context.Context, messageID string, approve bool, by Decider) error {
	m, err := in.Store.GetMessage(ctx, messageID)
	if err != nil {
		return err
	}
	// The sender is told the decision (PHI-free: the message's id and time).
	d, err := in.senderNote(m, approve)
	if err != nil {
		return err
	}
	state, action := store.StateDenied, "quarantine.deny"
	if approve {
		state, action = store.StateDelivered, "quarantine.approve"
		u, err := in.Store.UserByID(ctx, m.RecipientID)
		if err != nil {
			return err
		}
		rcpt, err := in.Identity.Email(u)
		if err != nil {
			return err
		}
		notice, err := in.Notice(ctx, u, rcpt, *m, in.now())
		if err != nil {
			return err
		}
		d.ClaimTokens = notice.ClaimTokens
		d.Outbox = append(notice.Outbox, d.Outbox...)
	}
	var details map[string]string
	if by.Note != "" {
		details = map[string]string{"note": by.Note}
	}
	b, err := audit.Prepare(ctx, in.Audit, audit.Entry{Actor: by.UserID, IP: by.IP, Action: action,
		ObjectType: "message", ObjectID: m.ID, Outcome: audit.OK, Details: details})
	if err != nil {
		return err
	}
	d.Audit = b.Func()
	if err := in.Store.DecideQuarantine(ctx, m.ID, state, d); err != nil {
		return err
	}
	in.publish(ctx, decidedEvent(m, approve))
	if in.Notifier != nil {
		in.Notifier.Kick()
	}
	return b.Committed(ctx)
}

// decisionDetails are the trail's details of a decision: the recipient
// (encrypted at rest), rule, version and detector counts, never values.
func decisionDetails(rcpt string, d policy.Decision) map[string]string {
	m := map[string]string{"recipient": rcpt, "action": string(d.Action), "rule": d.Rule, "policy_version": fmt.Sprint(d.Version)}
	for name, n := range d.Detectors {
		m["detector."+name] = fmt.Sprint(n)
	}
	return m
}

func (in *Intake) audit(ctx context.Context, env Envelope, action, objType, objID, outcome string, details map[string]string) error {
	if in.Audit == nil {
		return nil
	}
	return in.Audit.Record(ctx, in.entry(ctx, env, action, objType, objID, outcome, details))
}

// entry is the trail's record of something the envelope's sender did.
func (in *Intake) entry(ctx context.Context, env Envelope, action, objType, objID, outcome string, details map[string]string) audit.Entry {
	return audit.Entry{Actor: env.Sender.ID, IP: env.IP, Action: action, ObjectType: objType, ObjectID: objID,
		Outcome: outcome, Correlation: logx.Correlation(ctx), Details: details}
}

// senderNote tells the sender of a held message what was decided.
func (in *Intake) senderNote(m *store.Message, approved bool) (store.Delivery, error) {
	sender, err := in.Store.UserByID(context.Background(), m.SenderID)
	if err != nil {
		return store.Delivery{}, err
	}
	to, err := in.Identity.Email(sender)
	if err != nil {
		return store.Delivery{}, err
	}
	what := "was approved by an administrator and delivered to the secure portal"
	if !approved {
		what = "was denied by an administrator and will not be delivered"
	}
	text := fmt.Sprintf("The secure message you sent on %s (reference %s, phigate id %s), held for review by the organisation's policy, %s.",
		web.When(m.CreatedAt, in.Opts.Zone), web.Ref(m.ID), m.ID, what)
	item, err := notify.NewItem(in.Keys, notify.KindSenderNote, notify.Notice{To: to, Alert: text}, sender.ID, m.ID, in.now())
	return store.Delivery{Outbox: []store.OutboxItem{item}}, err
}
