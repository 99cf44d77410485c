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
	// Workers is how many notices go out at once, each worker over its
	// own connection, kept open across messages (DefaultWorkers if 0).
	Workers int
	// Probe is how often, while notices wait because the smarthost could
	// not be reached, the dispatcher checks whether it is back
	// (DefaultProbe if 0).
	Probe time.Duration
	// Metrics and Audit may be nil.
	Metrics *metrics.M
	Audit   audit.Recorder
	// Push sends the push channel's rows (push.go); nil: they fail.
	Push *Pusher
	// Templates word the notice emails (nil: the built-in ones); DKIM
	// signs them (nil: unsigned). See templates.go, dkim.go.
	Templates *Templates
	DKIM      *DKIMSigner

	kickOnce sync.Once
	kick     chan struct{}
	stopOnce sync.Once
	stop     chan struct{}
	wake     chan struct{}

	mu      sync.Mutex
	waiting map[string]waitingItem // see wait
}

// DefaultWorkers: smarthost round trips (or the maildrop's fsyncs)
// overlap, and each worker reuses its connection, so a notice costs one
// MAIL/RCPT/DATA exchange instead of a dial, TLS handshake and AUTH. While
// intake keeps both cores busy, each of a send's round trips waits to be
// scheduled, so notices keep pace only with enough sends at once (figures
// in docs/perf.md).
const DefaultWorkers = 16

// DefaultProbe bounds how long a recovered smarthost goes unnoticed.
const DefaultProbe = 10 * time.Second

// idleClose: a worker's smarthost connection is closed after this long
// without work (smarthosts drop idle sessions themselves after minutes).
const idleClose = 30 * time.Second

const batchSize = 64

// kicks returns the kick channel, made once (Kick may run before Run).
func (d *Dispatcher) kicks() chan struct{} {
	d.kickOnce.Do(func() { d.kick, d.wake = make(chan struct{}, 1), make(chan struct{}, 1) })
	return d.kick
}

func (d *Dispatcher) stops() chan struct{} {
	d.stopOnce.Do(func() { d.stop = make(chan struct{}) })
	return d.stop
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

// Stop asks Run to take no more notices, finish the sends under way, hand
// back what it had taken but not sent, and return. Ending Run's context
// instead also cuts the sends under way (they are handed back too).
func (d *Dispatcher) Stop() {
	s := d.stops()
	select {
	case <-s:
	default:
		close(s)
	}
}

// Run sends until ctx ends or Stop. It polls as a safety net, so a notice
// committed just before a crash goes out after restart without any kick.
func (d *Dispatcher) Run(ctx context.Context) {
	d.run(ctx, false)
}

// RunOnce sends every due notice once and returns how many went out.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	return d.run(ctx, true)
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

// due returns the notices to send now. With several nodes (Lease > 0) it
// leases them, so no other node sends them meanwhile; a lease outlives one
// send (2 minutes), and a node that crashes mid-send leaves its notices to
// be sent when the lease runs out; a node that stops hands them back. A
// single node has no one to race and leases nothing, so after a crash its
// notices go out at once.
func (d *Dispatcher) due(ctx context.Context, limit int) ([]store.OutboxItem, error) {
	if d.Lease > 0 {
		return d.Store.LeaseOutbox(ctx, d.now(), d.now().Add(d.Lease), limit)
	}
	return d.Store.DueOutbox(ctx, d.now(), limit)
}

// handBack undoes the lease of a notice taken but not sent.
func (d *Dispatcher) handBack(ctx context.Context, it store.OutboxItem) {
	if d.Lease == 0 {
		return
	}
	if err := d.Store.OutboxRetry(ctx, it.ID, it.Attempts, it.NextAttemptAt, it.LastError); err != nil {
		d.Log.ErrorContext(ctx, "outbox hand back", "outbox", it.ID, "err", err)
	}
}

// outcome is what a worker reports for one notice.
type outcome struct {
	id   string
	sent bool
	err  error // the store could not record the outcome
}

// feed is one run of the dispatcher: it takes due notices and hands them
// to the workers, never the same notice twice at once.
type feed struct {
	d        *Dispatcher
	inflight map[string]bool
	queue    []store.OutboxItem
	sent     int
	err      error
}

func (d *Dispatcher) run(ctx context.Context, once bool) (int, error) {
	kick, stop := d.kicks(), d.stops()
	// Sends get ctx; the records of their outcome must be written even when
	// ctx has just ended, or a sent notice would be sent again.
	work, results := make(chan store.OutboxItem), make(chan outcome)
	marks := d.startMarker()
	var wg sync.WaitGroup
	for range d.workers() {
		wg.Add(1)
		go func() { defer wg.Done(); d.worker(ctx, work, results, marks) }()
	}
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	poll, probe := time.NewTicker(5*time.Second), time.NewTicker(d.probeEvery())
	defer poll.Stop()
	defer probe.Stop()
	probed := make(chan error, 1)
	probing, stopping, hold := false, false, false
	f := &feed{d: d, inflight: map[string]bool{}}
	fetch := true
	for {
		if fetch && !stopping && !hold && len(f.queue) == 0 {
			fetch = false
			if err := f.fill(ctx); err != nil {
				stopping = once || ctx.Err() != nil
			}
			if once && len(f.queue) == 0 && len(f.inflight) == 0 {
				stopping = true
			}
		}
		if stopping && len(f.inflight) == 0 {
			break
		}
		var out chan store.OutboxItem
		var next store.OutboxItem
		if len(f.queue) > 0 && !stopping {
			out, next = work, f.queue[0]
		}
		select {
		case out <- next:
			f.inflight[next.ID] = true
			f.queue = f.queue[1:]
			fetch = len(f.queue) == 0
		case r := <-results:
			delete(f.inflight, r.id)
			if r.sent {
				f.sent++
			}
			if r.err != nil {
				// The outbox could not be written: wait for the next poll
				// rather than take the same notice again at once.
				f.err, hold = r.err, true
				stopping = stopping || once
			}
			fetch = fetch || len(f.queue) == 0
		case <-kick:
			fetch = true
		case <-poll.C:
			fetch, hold = true, false
		case <-probe.C:
			if !once && !probing && d.hasWaiting() {
				probing = true
				go func() { probed <- d.probe(pctx) }()
			}
		case err := <-probed:
			probing = false
			if err == nil {
				fetch = d.releaseWaiting(ctx) > 0 || fetch
			}
		case <-d.wake:
			fetch = d.releaseWaiting(ctx) > 0 || fetch
		case <-stop:
			stopping = true
		case <-ctx.Done():
			stopping = true
		}
	}
	close(work)
	wg.Wait()
	marks.stop()
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, it := range f.queue {
		d.handBack(hctx, it)
	}
	return f.sent, f.err
}

func (d *Dispatcher) workers() int {
	if d.Workers > 0 {
		return d.Workers
	}
	return DefaultWorkers
}

// fill takes the next due notices, leaving out those being sent.
func (f *feed) fill(ctx context.Context) error {
	items, err := f.d.due(ctx, batchSize+len(f.inflight))
	if err != nil {
		if ctx.Err() == nil {
			f.d.Log.ErrorContext(ctx, "outbox", "err", err)
			f.err = err
		}
		return err
	}
	for _, it := range items {
		if !f.inflight[it.ID] {
			f.queue = append(f.queue, it)
		}
	}
	return nil
}

func (d *Dispatcher) probeEvery() time.Duration {
	if d.Probe > 0 {
		return d.Probe
	}
	return DefaultProbe
}

// worker sends the notices it is handed over one connection of its own.
func (d *Dispatcher) worker(ctx context.Context, work <-chan store.OutboxItem, results chan<- outcome, marks *marker) {
	conn := outbound.NewConn(d.Sender)
	defer conn.Close()
	idle := time.NewTimer(idleClose)
	defer idle.Stop()
	for {
		select {
		case it, ok := <-work:
			if !ok {
				return
			}
			// Each notice gets its own correlation id, like a request.
			results <- d.deliver(logx.WithCorrelation(ctx, logx.NewCorrelationID()), conn, it, marks)
			idle.Reset(idleClose)
		case <-idle.C:
			conn.Close()
		}
	}
}

// deliver sends one notice and records the outcome at once: a crash
// after this repeats at most the sends under way.
func (d *Dispatcher) deliver(ctx context.Context, conn outbound.Conn, it store.OutboxItem, marks *marker) outcome {
	err := d.send(ctx, conn, it)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	switch {
	case err == nil:
		if err := marks.mark(ctx, it); err != nil {
			return outcome{id: it.ID, err: err}
		}
		d.forget(it.ID)
		d.Metrics.NoticeSent(it.Kind)
		d.Log.InfoContext(ctx, "notice sent", "outbox", it.ID, "kind", it.Kind, "message", it.MessageID)
		if ChannelOf(it.Kind) == ChannelEmail && d.hasWaiting() {
			// The next hop works again: what waits for it need not wait
			// for its back-off slot. (A push went elsewhere: it says
			// nothing of the smarthost.)
			select {
			case d.wake <- struct{}{}:
			default:
			}
		}
		return outcome{id: it.ID, sent: true}
	case ctx.Err() != nil:
		// Cut by shutdown: not the notice's fault; handed back as it was.
		d.Log.InfoContext(rctx, "notice send cut by shutdown, handed back", "outbox", it.ID)
		d.handBack(rctx, it)
		return outcome{id: it.ID}
	}
	return outcome{id: it.ID, err: d.retry(rctx, it, err)}
}

// marker group-commits the sent marks of notices whose sends succeeded.
// A worker waits for the commit that holds its mark before it sends
// again, so a crash repeats at most the sends in flight; workers that
// finish together share one write, which matters when intake holds the
// database's write lock most of the time. The notice.send audit entries
// are written beside, not waited for: waiting for the trail's commit too
// made each send wait for two commits (a notice is not PHI-bearing, and a
// stop waits for the entries).
type marker struct {
	d      *Dispatcher
	reqs   chan markReq
	done   chan struct{}
	audits sync.WaitGroup
}

type markReq struct {
	ctx  context.Context // the notice's, for its audit entry's correlation id
	it   store.OutboxItem
	done chan error
}

func (d *Dispatcher) startMarker() *marker {
	m := &marker{d: d, reqs: make(chan markReq), done: make(chan struct{})}
	go m.loop()
	return m
}

// mark returns once its mark is committed (or could not be).
func (m *marker) mark(ctx context.Context, it store.OutboxItem) error {
	done := make(chan error, 1)
	m.reqs <- markReq{ctx, it, done}
	return <-done
}

// stop ends the loop and waits for the audit entries; every worker must
// have returned.
func (m *marker) stop() {
	close(m.reqs)
	<-m.done
	m.audits.Wait()
}

func (m *marker) loop() {
	defer close(m.done)
	for r := range m.reqs {
		batch := []markReq{r}
	fill:
		for {
			select {
			case r, ok := <-m.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		err := m.commit(batch)
		for _, r := range batch {
			r.done <- err
		}
	}
}

func (m *marker) commit(batch []markReq) error {
	// Not the send's context: a sent notice is recorded even while stopping.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.it.ID
	}
	if err := m.d.Store.OutboxSent(ctx, m.d.now(), ids...); err != nil {
		return err
	}
	// The trail group-commits entries recorded at once.
	for _, r := range batch {
		m.audits.Add(1)
		go func() {
			defer m.audits.Done()
			actx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), 10*time.Second)
			defer cancel()
			m.d.audit(actx, r.it, "ok", "")
		}()
	}
	return nil
}

// waitingItem is a notice this node put in back-off because the next hop
// could not be reached.
type waitingItem struct {
	attempts int
	next     time.Time
	lastErr  string
}

func (d *Dispatcher) wait(id string, w waitingItem) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waiting == nil {
		d.waiting = map[string]waitingItem{}
	}
	d.waiting[id] = w
}

func (d *Dispatcher) forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.waiting, id)
}

func (d *Dispatcher) hasWaiting() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.waiting) > 0
}

// probe checks the next hop without sending; a sender that can't be
// probed is taken to be back only when a send succeeds.
func (d *Dispatcher) probe(ctx context.Context) error {
	p, ok := d.Sender.(outbound.Prober)
	if !ok {
		return errors.New("no probe")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return p.Probe(ctx)
}

// releaseWaiting makes the notices waiting for an unreachable next hop due
// now, once it is reachable again, and returns how many.
func (d *Dispatcher) releaseWaiting(ctx context.Context) int {
	d.mu.Lock()
	w := d.waiting
	d.waiting = nil
	d.mu.Unlock()
	now, n := d.now(), 0
	for id, it := range w {
		// Only while it still waits for its slot: after that, another
		// node may have sent it.
		if !now.Before(it.next) {
			continue
		}
		if err := d.Store.OutboxRetry(ctx, id, it.attempts, now, it.lastErr); err != nil {
			d.Log.ErrorContext(ctx, "outbox release", "outbox", id, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		d.Log.InfoContext(ctx, "next hop reachable again: waiting notices are due now", "notices", n)
	}
	return n
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
	// Only the smarthost is probed: a push service that fails is retried
	// on its back-off alone.
	if !permanent && ChannelOf(it.Kind) == ChannelEmail && outbound.Unreachable(sendErr) {
		d.wait(it.ID, waitingItem{attempts: attempts, next: next, lastErr: describe(sendErr)})
	} else {
		d.forget(it.ID)
	}
	d.Metrics.NoticeFailed(it.Kind, permanent)
	d.audit(ctx, it, "failed", describe(sendErr))
	if permanent {
		next = never
		d.Log.ErrorContext(ctx, "notice failed for good", "outbox", it.ID, "attempts", attempts, "err", describe(sendErr))
	} else {
		d.Log.WarnContext(ctx, "notice not sent, will retry", "outbox", it.ID, "attempts", attempts, "next", next, "err", describe(sendErr))
	}
	return d.Store.OutboxRetry(ctx, it.ID, attempts, next, describe(sendErr))
}

func (d *Dispatcher) send(ctx context.Context, conn outbound.Conn, it store.OutboxItem) error {
	if it.Kind == KindRelay {
		return d.sendOnward(ctx, conn, it)
	}
	if ChannelOf(it.Kind) == ChannelPush {
		if d.Push == nil {
			return &outbound.PermanentError{Err: errors.New("push is not set up on this node")}
		}
		return d.Push.Send(ctx, it)
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
	msg, err := d.render(it, n)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return conn.Send(sctx, d.Org.NotifyFrom, []string{n.To}, msg)
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
