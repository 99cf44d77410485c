package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/logx"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/metrics"
	"github.com/phigate/phigate/outbound"
	"github.com/phigate/phigate/store"
)

// Sealer opens outbox payloads (implemented by keys.Ring).
type Sealer interface {
	SealField(purpose string, plaintext []byte) ([]byte, error)
	OpenField(purpose string, sealed []byte) ([]byte, error)
}

// PayloadPurpose binds a sealed payload to its outbox row.
func PayloadPurpose(outboxID string) string { return "outbox:" + outboxID }

// MaxAttempts bounds retries (about a day and a half with the back-off
// below); after that the notice is left failed and logged as an error.
const MaxAttempts = 40

// Dispatcher sends due notices from the outbox with retries and back-off.
type Dispatcher struct {
	Store    store.Store
	Keys     Sealer
	Sender   outbound.Sender
	Org      config.Org
	Hostname string
	Log      *slog.Logger
	Now      func() time.Time
	// Lease is how long a node owns the notices it takes (0: single node,
	// no leases). See due.
	Lease time.Duration
	// MaxRelayAge: onward mail is retried this long before a
	// delivery-failure report (DefaultMaxRelayAge if 0).
	MaxRelayAge time.Duration
	// Metrics and Audit may be nil.
	Metrics *metrics.M
	Audit   audit.Recorder

	kickOnce sync.Once
	kick     chan struct{}
}

// kicks returns the kick channel, made once (Kick may run before Run).
func (d *Dispatcher) kicks() chan struct{} {
	d.kickOnce.Do(func() { d.kick = make(chan struct{}, 1) })
	return d.kick
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Kick asks the dispatcher to look at the outbox now (after a commit).
func (d *Dispatcher) Kick() {
	select {
	case d.kicks() <- struct{}{}:
	default:
	}
}

// Run sends until ctx ends. It polls as a safety net, so a notice committed
// just before a crash goes out after restart without any kick.
func (d *Dispatcher) Run(ctx context.Context) {
	kick := d.kicks()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		// Each pass gets its own correlation id, like a request.
		pass := logx.WithCorrelation(ctx, logx.NewCorrelationID())
		if _, err := d.RunOnce(pass); err != nil && ctx.Err() == nil {
			d.Log.ErrorContext(pass, "outbox", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
	}
}

// never is the next_attempt_at of a notice that failed for good. It must
// fit the store's int64 Unix nanoseconds (years 1678 to 2262): year 9999
// wrapped round to 1815 and made the notice due again at once.
var never = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// backoff: 30 s doubling to at most one hour.
func backoff(attempts int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < attempts && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}

// Concurrency is how many notices go out at once: smarthost round trips
// (or the maildrop's fsyncs) overlap, and the sent marks of a whole batch
// are committed together, so the dispatcher takes the database's write
// lock once per batch instead of once per notice.
const Concurrency = 8

const batchSize = 64

// due returns the notices to send now. With several nodes (Lease > 0) it
// leases them, so no other node sends them meanwhile; a lease outlives one
// send (2 minutes), and a node that crashes mid-send leaves its notices to
// be sent when the lease runs out. A single node has no one to race and
// leases nothing, so after a crash its notices go out at once.
func (d *Dispatcher) due(ctx context.Context) ([]store.OutboxItem, error) {
	if d.Lease > 0 {
		return d.Store.LeaseOutbox(ctx, d.now(), d.now().Add(d.Lease), batchSize)
	}
	return d.Store.DueOutbox(ctx, d.now(), batchSize)
}

// RunOnce sends every due notice once and returns how many went out.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	sent := 0
	for {
		items, err := d.due(ctx)
		if err != nil || len(items) == 0 {
			return sent, err
		}
		errs := make([]error, len(items))
		sem := make(chan struct{}, Concurrency)
		var wg sync.WaitGroup
		for i, it := range items {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				errs[i] = d.send(ctx, it)
			}()
		}
		wg.Wait()
		var ok []string
		for i, it := range items {
			if errs[i] == nil {
				ok = append(ok, it.ID)
				d.Metrics.NoticeSent(it.Kind)
				d.audit(ctx, it, "ok", "")
				d.Log.InfoContext(ctx, "notice sent", "outbox", it.ID, "kind", it.Kind, "message", it.MessageID)
			}
		}
		if len(ok) > 0 {
			if err := d.Store.OutboxSent(ctx, d.now(), ok...); err != nil {
				return sent, err
			}
			sent += len(ok)
		}
		for i, it := range items {
			if errs[i] != nil {
				if err := d.retry(ctx, it, errs[i]); err != nil {
					return sent, err
				}
			}
		}
		if len(ok) == 0 || len(items) < batchSize {
			return sent, nil
		}
	}
}

// retry schedules the next attempt with back-off, or gives up on a
// permanent error or after MaxAttempts.
func (d *Dispatcher) retry(ctx context.Context, it store.OutboxItem, sendErr error) error {
	attempts := it.Attempts + 1
	next := d.now().Add(backoff(attempts))
	var perm *outbound.PermanentError
	permanent := errors.As(sendErr, &perm) || attempts >= MaxAttempts
	if it.Kind == KindRelay {
		// Onward mail is retried for a time, not a count; then its
		// sender is told.
		permanent = errors.As(sendErr, &perm) || d.now().Sub(it.CreatedAt) >= d.maxRelayAge()
		if permanent {
			if err := d.reportFailure(ctx, it, outbound.Describe(sendErr)); err != nil {
				d.Log.ErrorContext(ctx, "delivery-failure report", "outbox", it.ID, "err", err)
			}
		}
	}
	d.Metrics.NoticeFailed(it.Kind, permanent)
	d.audit(ctx, it, "failed", outbound.Describe(sendErr))
	if permanent {
		next = never
		d.Log.ErrorContext(ctx, "notice failed for good", "outbox", it.ID, "attempts", attempts, "err", outbound.Describe(sendErr))
	} else {
		d.Log.WarnContext(ctx, "notice not sent, will retry", "outbox", it.ID, "attempts", attempts, "next", next, "err", outbound.Describe(sendErr))
	}
	return d.Store.OutboxRetry(ctx, it.ID, attempts, next, outbound.Describe(sendErr))
}

func (d *Dispatcher) send(ctx context.Context, it store.OutboxItem) error {
	if it.Kind == KindRelay {
		return d.sendOnward(ctx, it)
	}
	if _, ok := kinds[it.Kind]; !ok {
		return &outbound.PermanentError{Err: errors.New("unknown outbox kind " + it.Kind)}
	}
	plain, err := d.Keys.OpenField(PayloadPurpose(it.ID), it.Payload)
	if err != nil {
		return &outbound.PermanentError{Err: err}
	}
	var n Notice
	if err := json.Unmarshal(plain, &n); err != nil {
		return &outbound.PermanentError{Err: err}
	}
	msg, err := RenderKind(it.Kind, n, d.Org, d.Hostname, it.ID, d.now())
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return d.Sender.Send(sctx, d.Org.NotifyFrom, []string{n.To}, msg)
}

func (d *Dispatcher) audit(ctx context.Context, it store.OutboxItem, outcome, why string) {
	if d.Audit == nil {
		return
	}
	// Filed under the message, so its history shows the notice (proof of
	// delivery); a notice without a message (reset, alert) under its row.
	objType, objID := "message", it.MessageID
	if objID == "" {
		objType, objID = "outbox", it.ID
	}
	details := map[string]string{"kind": it.Kind, "outbox": it.ID}
	if why != "" {
		details["error"] = why
	}
	if err := d.Audit.Record(ctx, audit.Entry{Actor: "system", Action: "notice.send", ObjectType: objType, ObjectID: objID,
		Outcome: outcome, Details: details}); err != nil {
		d.Log.ErrorContext(ctx, "audit write failed", "action", "notice.send", "err", err)
	}
}
