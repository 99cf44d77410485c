package gateway

import (
	"context"

	"github.com/phigate/phigate/events"
)

// publishPurged tells the open pages of each purged message's recipient
// and sender (issue 10.1) that its content is gone: expired, or recalled
// or denied earlier. After the purge committed; best effort.
func (g *Gateway) publishPurged(ctx context.Context, ids []string) {
	if g.Bus == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for _, id := range ids {
		m, err := g.Store.MessageMeta(ctx, id)
		if err != nil {
			g.Log.WarnContext(ctx, "live event: purged message not read", "message", id, "err", err)
			continue
		}
		if err := g.Bus.Publish(ctx, events.MessageChanged(events.MessagePurged, m.ID, m.RecipientID, m.SenderID)); err != nil {
			g.Log.WarnContext(ctx, "live event not published", "kind", events.MessagePurged, "message", id, "err", err)
			return // the bus is down: the rest would fail alike
		}
	}
}
