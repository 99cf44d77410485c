// Package alert watches the audit trail for events the security officer must
// hear about and sends PHI-free alerts (issue #5): account lock-outs, many
// failed sign-ins from one IP, break-glass use, grants of the admin role, an
// unusual volume of message opens or downloads by one user, and a failed
// audit-chain verification. Alerts go to a Sender (an email to the security
// officer through the outbox) and into a bounded in-memory list for the admin
// pages.
//
// # Rules
//
// Observe reacts to exactly these audit actions (see the Action constants):
//
//   - "auth.lockout": a "lockout" alert per event (ObjectID: the account's
//     user id or pseudonym; Actor is used when ObjectID is empty).
//   - "auth.login" with Outcome "failed": counted per IP (per /64 for IPv6);
//     an "ip-failures" alert when one address reaches Config.IPFailures
//     failures within a window.
//   - "breakglass.open": a "break-glass" alert per event (ObjectID: message id).
//   - "user.role.admin" with Outcome "ok" (or no Outcome): an "admin-grant"
//     alert per event (ObjectID: the user given the role; Actor: who gave it).
//   - "message.read" and "message.attachment", any Outcome: counted per Actor;
//     an "open-volume" alert when one actor reaches Config.OpensPerUser within
//     a window. Events without an Actor are not counted.
//   - "audit.verify" with Outcome "failed": an "audit-verify" alert per event
//     (ObjectID, if set: the first record that failed).
//   - "service.redis" with Outcome "failed": a "redis-outage" alert per event
//     (the gateway audits each outage once, when Redis stops answering).
//
// Every other event is ignored.
//
// Counting rules fire once per crossing: windows are fixed, starting at a
// key's first event; the alert fires when the count reaches the threshold and
// not on later events in the same window; a later window can fire again.
// Counters expire with their window, and at most 100,000 keys are tracked per
// rule (the oldest window is evicted first), so memory stays bounded whatever
// the traffic. Windows are measured on the Alerter's clock (the time events
// are observed), not on Event.Time, which is only shown in texts.
//
// # Rate limit
//
// Within one Window (starting at the first alert after the last one ended)
// at most MaxPerWindow alerts are handed to the Sender. Later alerts in that
// window are counted by kind, and when the window ends one "summary" alert
// says how many there were ("37 more alerts in the last 15 minutes: 30
// ip-failures, 7 lockout …"). Every alert, sent or summarised, is listed by
// Recent, so the admin page shows what the summary counted.
//
// # Cost and delivery
//
// Observe does its work synchronously under one mutex in amortised O(1):
// map look-ups, an append to a ring buffer and to a bounded send queue, and a
// non-blocking wake-up. It never calls the Sender; Run does, from its own
// goroutine, so a slow outbox cannot stall a sign-in or a message read. If
// the send queue is full (Run not running, or the Sender stuck for many
// windows), an alert is not queued but counted into the next summary; Stats
// reports it. A Sender error is counted in Stats and not retried here: the
// outbox the Sender writes to has its own retries.
//
// # Scale-out
//
// Counters are per process. Behind a load balancer each node counts the
// events it sees, so a threshold crossing spread evenly over N nodes needs N
// times the events; the per-event rules are unaffected.
//
// # PHI
//
// Alert texts carry only ids, IP addresses, action and kind names, counts,
// times and fixed words; see text.go for how that is enforced.
package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Event is what happened, from the audit trail's point of view (PHI-free
// fields only: ids, IPs, action names).
type Event struct {
	Time       time.Time
	Actor      string
	IP         string
	Action     string
	ObjectType string
	ObjectID   string
	Outcome    string
}

// The audit actions and outcomes Observe reacts to.
const (
	ActionLockout     = "auth.lockout"
	ActionLogin       = "auth.login" // with OutcomeFailed
	ActionBreakGlass  = "breakglass.open"
	ActionAdminGrant  = "user.role.admin" // with OutcomeOK (or "")
	ActionMessageRead = "message.read"
	ActionAttachment  = "message.attachment"
	ActionAuditVerify = "audit.verify" // with OutcomeFailed
	// ActionRedis with OutcomeFailed: Redis stopped answering.
	ActionRedis = "service.redis"

	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
)

// Alert kinds (Alert.Kind).
const (
	KindLockout     = "lockout"
	KindIPFailures  = "ip-failures"
	KindBreakGlass  = "break-glass"
	KindAdminGrant  = "admin-grant"
	KindOpenVolume  = "open-volume"
	KindAuditVerify = "audit-verify"
	KindRedisOutage = "redis-outage"
	KindSummary     = "summary"
)

// kind indexes the per-kind counts of the rate limit.
type kind int

const (
	kLockout kind = iota
	kIPFailures
	kBreakGlass
	kAdminGrant
	kOpenVolume
	kAuditVerify
	kRedisOutage
	numKinds
)

var kindNames = [numKinds]string{
	kLockout:     KindLockout,
	kIPFailures:  KindIPFailures,
	kBreakGlass:  KindBreakGlass,
	kAdminGrant:  KindAdminGrant,
	kOpenVolume:  KindOpenVolume,
	kAuditVerify: KindAuditVerify,
	kRedisOutage: KindRedisOutage,
}

const (
	// RecentMax is how many alerts Recent keeps (newest win).
	RecentMax = 500
	// MaxTrackedKeys bounds the IPs and the actors counted at one time.
	MaxTrackedKeys = 100_000
	// minQueue is the least send-queue length (it is at least 2×MaxPerWindow).
	minQueue = 1024
)

// Config sets thresholds; zero or negative fields take the defaults.
type Config struct {
	IPFailures   int           // failures from one IP within Window before "many failures from one IP" (default 20)
	OpensPerUser int           // message opens+downloads by one actor within Window before "unusual volume" (default 100)
	Window       time.Duration // default 15m
	MaxPerWindow int           // at most this many individual alert emails per Window; beyond it, one summary at the end of the window (default 10)
}

// DefaultConfig returns the defaults: 20 failures per IP, 100 opens per
// user, 15-minute windows, 10 alert emails per window.
func DefaultConfig() Config {
	return Config{IPFailures: 20, OpensPerUser: 100, Window: 15 * time.Minute, MaxPerWindow: 10}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.IPFailures <= 0 {
		c.IPFailures = d.IPFailures
	}
	if c.OpensPerUser <= 0 {
		c.OpensPerUser = d.OpensPerUser
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.MaxPerWindow <= 0 {
		c.MaxPerWindow = d.MaxPerWindow
	}
	return c
}

// Alert is one alert. Kind is one of the Kind constants; Text is PHI-free
// (ids, IPs, counts, times).
type Alert struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	Text string    `json:"text"`
}

// Sender delivers one alert (a PHI-free email to the security officer).
type Sender interface {
	SendAlert(ctx context.Context, a Alert) error
}

// Stats counts what the Alerter did, for metrics and the admin page.
type Stats struct {
	Raised      uint64 // alerts raised, summaries included
	Sent        uint64 // alerts the Sender accepted
	Summarised  uint64 // alerts held back by the rate limit and counted in a summary
	SendErrors  uint64 // Sender calls that failed
	Dropped     uint64 // summaries not queued because the send queue was full
	EvictedKeys uint64 // counters evicted before their window ended (key cap)
}

// Alerter applies the rules to observed events. It is safe for concurrent use.
type Alerter struct {
	cfg      Config
	send     Sender
	now      func() time.Time
	tick     time.Duration // how often Run checks for a window end
	maxQueue int

	mu       sync.Mutex
	ipFails  *counters
	opens    *counters
	recent   [RecentMax]Alert
	recentAt int // next slot to write
	recentN  int

	rlActive   bool
	rlStart    time.Time
	rlSent     int
	suppressed [numKinds]int

	queue []Alert
	wake  chan struct{}
	stats Stats
}

// New returns an Alerter that hands alerts to s (nil: alerts are only
// listed). now is its clock (nil: time.Now). Call Run to deliver.
func New(cfg Config, s Sender, now func() time.Time) *Alerter {
	cfg = cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	return &Alerter{
		cfg:      cfg,
		send:     s,
		now:      now,
		tick:     time.Second,
		maxQueue: max(minQueue, 2*cfg.MaxPerWindow),
		ipFails:  newCounters(cfg.Window, MaxTrackedKeys),
		opens:    newCounters(cfg.Window, MaxTrackedKeys),
		wake:     make(chan struct{}, 1),
	}
}

// Observe applies the rules to one audit event. It is cheap and never
// blocks on delivery (see the package comment); ctx is not used.
func (a *Alerter) Observe(_ context.Context, e Event) {
	now := a.now()
	at := e.Time
	if at.IsZero() {
		at = now
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rollLocked(now)
	switch e.Action {
	case ActionLockout:
		account := e.ObjectID
		if account == "" {
			account = e.Actor
		}
		a.raiseLocked(now, kLockout, at, lockoutText(idOf(account), addrOf(e.IP), at))
	case ActionLogin:
		if e.Outcome != OutcomeFailed || e.IP == "" {
			return
		}
		key := ipKey(e.IP)
		n, first, evicted := a.ipFails.add(key.s, now)
		a.stats.EvictedKeys += evicted
		if n == a.cfg.IPFailures {
			a.raiseLocked(now, kIPFailures, at, ipFailuresText(key, n, a.cfg.Window, first, now))
		}
	case ActionBreakGlass:
		a.raiseLocked(now, kBreakGlass, at, breakGlassText(idOf(e.ObjectID), idOf(e.Actor), addrOf(e.IP), at))
	case ActionAdminGrant:
		if e.Outcome != OutcomeOK && e.Outcome != "" {
			return
		}
		a.raiseLocked(now, kAdminGrant, at, adminGrantText(idOf(e.ObjectID), idOf(e.Actor), addrOf(e.IP), at))
	case ActionMessageRead, ActionAttachment:
		if e.Actor == "" {
			return
		}
		actor := idOf(e.Actor)
		n, first, evicted := a.opens.add(actor.s, now)
		a.stats.EvictedKeys += evicted
		if n == a.cfg.OpensPerUser {
			a.raiseLocked(now, kOpenVolume, at, openVolumeText(actor, n, a.cfg.Window, first, now, addrOf(e.IP)))
		}
	case ActionAuditVerify:
		if e.Outcome != OutcomeFailed {
			return
		}
		a.raiseLocked(now, kAuditVerify, at, auditVerifyText(idOf(e.ObjectID), idOf(e.Actor), addrOf(e.IP), at))
	case ActionRedis:
		if e.Outcome != OutcomeFailed {
			return
		}
		a.raiseLocked(now, kRedisOutage, at, redisOutageText(at))
	}
}

// raiseLocked lists a new alert and queues it for sending unless the rate
// limit holds it back for the summary.
func (a *Alerter) raiseLocked(now time.Time, k kind, at time.Time, text string) {
	al := Alert{ID: newID(), Time: at, Kind: kindNames[k], Text: text}
	a.listLocked(al)
	if !a.rlActive {
		a.rlActive, a.rlStart, a.rlSent = true, now, 0
	}
	if a.rlSent < a.cfg.MaxPerWindow && len(a.queue) < a.maxQueue {
		a.rlSent++
		a.queueLocked(al)
		return
	}
	a.suppressed[k]++
	a.stats.Summarised++
}

// rollLocked ends the rate-limit window if it is over, raising its summary
// if alerts were held back.
func (a *Alerter) rollLocked(now time.Time) {
	if !a.rlActive {
		return
	}
	end := a.rlStart.Add(a.cfg.Window)
	if now.Before(end) {
		return
	}
	a.summariseLocked(a.rlStart, end)
}

// summariseLocked raises the summary of [start, end) if alerts were held
// back, and closes the rate-limit window.
func (a *Alerter) summariseLocked(start, end time.Time) {
	total := 0
	for _, n := range a.suppressed {
		total += n
	}
	if total > 0 {
		al := Alert{ID: newID(), Time: end, Kind: KindSummary, Text: summaryText(a.suppressed, end.Sub(start), start, end)}
		a.listLocked(al)
		if len(a.queue) < a.maxQueue+1 { // one slot beyond the cap is kept for summaries
			a.queueLocked(al)
		} else {
			a.stats.Dropped++
		}
	}
	a.rlActive, a.rlSent, a.suppressed = false, 0, [numKinds]int{}
}

func (a *Alerter) listLocked(al Alert) {
	a.recent[a.recentAt] = al
	a.recentAt = (a.recentAt + 1) % RecentMax
	if a.recentN < RecentMax {
		a.recentN++
	}
	a.stats.Raised++
}

func (a *Alerter) queueLocked(al Alert) {
	if a.send == nil {
		return
	}
	a.queue = append(a.queue, al)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Recent returns up to n of the latest alerts, newest first (n <= 0: all
// kept, at most RecentMax).
func (a *Alerter) Recent(n int) []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n <= 0 || n > a.recentN {
		n = a.recentN
	}
	out := make([]Alert, n)
	for i := range out {
		out[i] = a.recent[(a.recentAt-1-i+RecentMax)%RecentMax]
	}
	return out
}

// Stats returns the counters.
func (a *Alerter) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// shutdownTimeout bounds the last delivery attempt when Run stops.
const shutdownTimeout = 5 * time.Second

// Run delivers queued alerts and raises each window's summary when the
// window ends, until ctx is done. On the way out it raises the summary of
// the unfinished window (over the time it has run) and makes one last
// attempt, bounded by a few seconds, to deliver what is queued, so a restart
// does not swallow alerts. Run one Run per Alerter.
func (a *Alerter) Run(ctx context.Context) {
	t := time.NewTicker(a.tick)
	defer t.Stop()
	for {
		a.flush(ctx)
		select {
		case <-ctx.Done():
			a.mu.Lock()
			if a.rlActive {
				now := a.now()
				if end := a.rlStart.Add(a.cfg.Window); now.After(end) {
					now = end
				} else if now.Before(a.rlStart) {
					now = a.rlStart
				}
				a.summariseLocked(a.rlStart, now)
			}
			a.mu.Unlock()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			a.flush(fctx)
			cancel()
			return
		case <-a.wake:
		case <-t.C:
		}
	}
}

// flush ends the rate-limit window if due and hands the queue to the Sender.
// If ctx ends part-way, the unsent rest goes back to the head of the queue.
func (a *Alerter) flush(ctx context.Context) {
	a.mu.Lock()
	a.rollLocked(a.now())
	batch := a.queue
	a.queue = nil
	a.mu.Unlock()
	for i, al := range batch {
		if ctx.Err() != nil {
			a.mu.Lock()
			a.queue = append(append([]Alert(nil), batch[i:]...), a.queue...)
			a.mu.Unlock()
			return
		}
		err := a.send.SendAlert(ctx, al)
		a.mu.Lock()
		if err != nil {
			a.stats.SendErrors++
		} else {
			a.stats.Sent++
		}
		a.mu.Unlock()
	}
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics instead)
	return hex.EncodeToString(b)
}
