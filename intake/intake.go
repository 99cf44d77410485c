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
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/outbound"
	"github.com/phigate/phigate/policy"
	"github.com/phigate/phigate/store"
)

type Options struct {
	Expiry    time.Duration // how long a portal message stays readable
	ClaimTTL  time.Duration // how long a claim link works
	PublicURL string        // portal base URL for links in notices
}

type Intake struct {
	Store    store.Store
	Keys     *keys.Ring
	Identity *identity.Service
	Policy   policy.Decider
	Relay    outbound.Sender
	Notifier interface{ Kick() }
	Log      *slog.Logger
	Opts     Options
	Now      func() time.Time
}

// Envelope is the SMTP envelope of one transaction, after AUTH.
type Envelope struct {
	Sender *store.User
	From   string
	To     []string
}

// Result says what happened to each recipient class.
type Result struct {
	Relayed    int
	Portal     int
	MessageIDs []string
}

// ErrRejected is returned when a recipient's decision is reject at DATA time
// (the session normally refuses it at RCPT already).
var ErrRejected = errors.New("intake: recipient rejected by policy")

func (in *Intake) now() time.Time {
	if in.Now != nil {
		return in.Now()
	}
	return time.Now()
}

// Accept delivers raw to every envelope recipient. It returns nil only when
// every relay recipient was handed to the next hop and every portal copy and
// its notice are committed.
func (in *Intake) Accept(ctx context.Context, env Envelope, raw []byte) (Result, error) {
	var relayTo, portalTo []string
	for _, rcpt := range env.To {
		d := in.Policy.Decide(policy.Input{Sender: env.From, Recipient: rcpt})
		switch d.Action {
		case policy.Relay:
			relayTo = append(relayTo, rcpt)
		case policy.Portal:
			portalTo = append(portalTo, rcpt)
		default:
			return Result{}, fmt.Errorf("%w: action %s", ErrRejected, d.Action)
		}
	}
	var res Result
	// Relay first: if the smarthost fails we answer 4xx and nothing was
	// committed, so the client's retry duplicates nothing in the portal.
	if len(relayTo) > 0 {
		if err := in.Relay.Send(ctx, env.From, relayTo, raw); err != nil {
			return res, fmt.Errorf("relay: %s", outbound.Describe(err))
		}
		res.Relayed = len(relayTo)
		in.Log.InfoContext(ctx, "relayed", "recipients", len(relayTo))
	}
	if len(portalTo) > 0 {
		ids, err := in.storePortal(ctx, env, portalTo, raw)
		if err != nil {
			return res, err
		}
		res.Portal, res.MessageIDs = len(portalTo), ids
		if in.Notifier != nil {
			in.Notifier.Kick()
		}
	}
	return res, nil
}

func (in *Intake) storePortal(ctx context.Context, env Envelope, rcpts []string, raw []byte) ([]string, error) {
	summary, err := json.Marshal(message.PreviewSummary(raw))
	if err != nil {
		return nil, err
	}
	// A claim finishing between sealing and commit changes the recipient's
	// key; the store notices and we seal again to the new key.
	for attempt := 0; attempt < 3; attempt++ {
		d, ids, err := in.prepare(ctx, env, rcpts, raw, summary)
		if err != nil {
			return nil, err
		}
		err = in.Store.Deliver(ctx, d)
		if errors.Is(err, store.ErrKeyChanged) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
		for i, id := range ids {
			in.Log.InfoContext(ctx, "stored for portal", "message", id, "recipient", logx.Addr(rcpts[i]),
				"size", len(raw), "policy", "default-portal")
		}
		return ids, nil
	}
	return nil, errors.New("commit: recipient key kept changing")
}

func (in *Intake) prepare(ctx context.Context, env Envelope, rcpts []string, raw, summary []byte) (store.Delivery, []string, error) {
	var d store.Delivery
	var ids []string
	now := in.now()
	for _, rcpt := range rcpts {
		u, err := in.Identity.EnsureRecipient(ctx, rcpt)
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
		m := store.Message{
			ID: identity.NewID(), RecipientID: u.ID, SenderID: env.Sender.ID, KeyFpr: u.KeyFpr,
			CreatedAt: now, ExpiresAt: now.Add(in.Opts.Expiry), Size: int64(len(raw)), Policy: "default-portal",
			KeyPackets: body.KeyPackets, Body: body.Data, SummaryKeys: sum.KeyPackets, Summary: sum.Data,
		}
		notice := notify.Notice{To: keys.NormalizeAddr(rcpt), ExpiresAt: m.ExpiresAt, Link: in.Opts.PublicURL + "/login"}
		if u.Status == store.StatusPending {
			raw, tok := in.Identity.NewClaimToken(u.ID, in.Opts.ClaimTTL)
			d.ClaimTokens = append(d.ClaimTokens, tok)
			notice.Link, notice.Claim = in.Opts.PublicURL+"/claim/"+raw, true
		}
		item, err := notify.NewItem(in.Keys, notify.KindNewMessage, notice, u.ID, m.ID, now)
		if err != nil {
			return d, nil, err
		}
		d.Messages = append(d.Messages, m)
		d.Outbox = append(d.Outbox, item)
		ids = append(ids, m.ID)
	}
	return d, ids, nil
}
