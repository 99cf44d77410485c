package intake

import (
	"context"

	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/store"
)

// publish tells open portal pages (issue 10.1) of changes that have
// committed: an event is only a hint to re-read, so it is sent after the
// commit, never before, and its failure changes nothing (the message is
// stored; the page sees it at its next load).
func (in *Intake) publish(ctx context.Context, evs ...events.Event) {
	if in.Events == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for _, e := range evs {
		if err := in.Events.Publish(ctx, e); err != nil {
			in.Log.WarnContext(ctx, "live event not published", "kind", e.Kind, "message", e.MessageID, "err", err)
		}
	}
}

// storedEvents are the events of committed copies: new in the recipient's
// inbox, or held (only the sender hears of a quarantined copy).
func storedEvents(msgs []store.Message) []events.Event {
	out := make([]events.Event, 0, len(msgs))
	for _, m := range msgs {
		if m.State == store.StateQuarantined {
			out = append(out, events.MessageChanged(events.MessageHeld, m.ID, "", m.SenderID))
			continue
		}
		out = append(out, events.MessageChanged(events.NewMessage, m.ID, m.RecipientID, m.SenderID))
	}
	return out
}

// decidedEvent is the event of a quarantine decision that committed.
func decidedEvent(m *store.Message, approve bool) events.Event {
	if approve {
		return events.MessageChanged(events.NewMessage, m.ID, m.RecipientID, m.SenderID)
	}
	return events.MessageChanged(events.MessageDenied, m.ID, "", m.SenderID)
}
