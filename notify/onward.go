package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/phigate/phigate/outbound"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// Outbox kinds for onward mail (issue #4: one durable outbound queue).
const (
	KindRelay           = "relay"            // a message for the smarthost as it is (relay, PGP/MIME, reply)
	KindDeliveryFailure = "delivery-failure" // the report to the internal sender when relay gives up
	KindPasscode        = "passcode"         // tells the internal sender a message's first-access passcode
	KindSenderNote      = "sender-note"      // tells the internal sender what became of a message (quarantine decision)
)

// DefaultMaxRelayAge is how long onward mail is retried before its sender
// gets a delivery-failure report.
const DefaultMaxRelayAge = 48 * time.Hour

// Onward is the sealed payload of a relay item: the whole message, which is
// PHI, so it lives only sealed under the master field key.
type Onward struct {
	From      string   `json:"from"`
	To        []string `json:"to"`
	Raw       []byte   `json:"raw"`
	ReportTo  string   `json:"report_to,omitempty"`  // internal sender told if it can't be delivered
	MessageID string   `json:"message_id,omitempty"` // for the report; no subject, no recipients
}

// NewOnwardItem seals o into a relay outbox row, to commit with whatever
// accepted it (the SMTP transaction, a portal reply).
func NewOnwardItem(keys Sealer, o Onward, now time.Time) (store.OutboxItem, error) {
	id := store.NewID()
	plain, err := json.Marshal(o)
	if err != nil {
		return store.OutboxItem{}, err
	}
	sealed, err := keys.SealField(PayloadPurpose(id), plain)
	if err != nil {
		return store.OutboxItem{}, err
	}
	return store.OutboxItem{ID: id, Kind: KindRelay, Payload: sealed, CreatedAt: now, NextAttemptAt: now}, nil
}

func (d *Dispatcher) openOnward(it store.OutboxItem) (Onward, error) {
	var o Onward
	plain, err := d.Keys.OpenField(PayloadPurpose(it.ID), it.Payload)
	if err != nil {
		return o, &outbound.PermanentError{Err: err}
	}
	if err := json.Unmarshal(plain, &o); err != nil {
		return o, &outbound.PermanentError{Err: err}
	}
	return o, nil
}

func (d *Dispatcher) sendOnward(ctx context.Context, conn outbound.Conn, it store.OutboxItem) error {
	o, err := d.openOnward(it)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return conn.Send(sctx, o.From, o.To, o.Raw)
}

func (d *Dispatcher) maxRelayAge() time.Duration {
	if d.MaxRelayAge > 0 {
		return d.MaxRelayAge
	}
	return DefaultMaxRelayAge
}

// reportFailure queues the delivery-failure report for a relay item given
// up on: PHI-free (the Message-ID, a count, the reason codes, the time).
func (d *Dispatcher) reportFailure(ctx context.Context, it store.OutboxItem, why string) error {
	o, err := d.openOnward(it)
	if err != nil || o.ReportTo == "" {
		return err
	}
	text := fmt.Sprintf("A message you sent through %s on %s (Message-ID <%s>) could not be delivered to %s: %s. It was retried for %s.",
		d.Org.Name, it.CreatedAt.UTC().Format("Monday 2 January 2006, 15:04 MST"), o.MessageID, web.Count(len(o.To), "recipient"), why,
		d.now().Sub(it.CreatedAt).Round(time.Minute))
	item, err := NewItem(d.Keys, KindDeliveryFailure, Notice{To: o.ReportTo, Alert: text}, "", "", d.now())
	if err != nil {
		return err
	}
	return d.Store.Deliver(ctx, store.Delivery{Outbox: []store.OutboxItem{item}})
}
