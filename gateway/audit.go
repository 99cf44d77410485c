package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/phigate/phigate/alert"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/metrics"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

// openTrail opens the audit trail on the gateway's database; checkpoints go
// to DATA/audit-checkpoints.jsonl (and the log).
func (g *Gateway) openTrail() error {
	mac, enc := g.Keys.AuditKeys()
	var eps []audit.KeyEpoch // issue 14.3: every master-key epoch's audit keys
	for _, e := range g.Keys.AuditEpochs() {
		eps = append(eps, audit.KeyEpoch{Epoch: e.Epoch, FromSeq: e.FromSeq, MAC: e.MAC, Enc: e.Enc})
	}
	t, err := audit.New(audit.Options{Store: g.Store, MACKey: mac, EncKey: enc, Epochs: eps,
		CheckpointFile: DataPath(g.Cfg, "audit-checkpoints.jsonl"), Log: g.Log})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	g.Trail = t
	return nil
}

// fanout is what every part of the gateway records through: the trail
// first (an entry that is not committed is an error the caller acts on),
// then the security alerts and the write-latency metric.
type fanout struct {
	trail   *audit.Trail
	alerts  *alert.Alerter
	metrics *metrics.M
}

func (f fanout) Record(ctx context.Context, e audit.Entry) error {
	start := time.Now()
	err := f.trail.Record(ctx, e)
	f.metrics.AuditWrite(time.Since(start))
	if err != nil {
		return err
	}
	f.observe(ctx, e)
	return nil
}

// Prepare makes entries that a store transaction commits with its change
// (audit.Batch); the alerts see them once committed.
func (f fanout) Prepare(ctx context.Context, entries ...audit.Entry) (*audit.Batch, error) {
	b, err := f.trail.Prepare(ctx, entries...)
	if err != nil {
		return nil, err
	}
	b.Observe(f.observe)
	return b, nil
}

func (f fanout) observe(ctx context.Context, e audit.Entry) {
	if f.alerts != nil {
		f.alerts.Observe(ctx, alert.Event{Time: time.Now(), Actor: e.Actor, IP: e.IP, Action: e.Action,
			ObjectType: e.ObjectType, ObjectID: e.ObjectID, Outcome: e.Outcome})
	}
}

// alertMailer sends security alerts to the officer through the outbox.
type alertMailer struct{ g *Gateway }

func (m alertMailer) SendAlert(ctx context.Context, a alert.Alert) error {
	item, err := notify.NewItem(m.g.Keys, notify.KindSecurityAlert, notify.Notice{To: m.g.Cfg.Security.OfficerEmail,
		Link: m.g.Cfg.Server.PublicURL + "/admin/alerts", Alert: a.Text}, "", "", time.Now())
	if err != nil {
		return err
	}
	if err := m.g.Store.Deliver(ctx, store.Delivery{Outbox: []store.OutboxItem{item}}); err != nil {
		return err
	}
	m.g.Dispatcher.Kick()
	return nil
}
