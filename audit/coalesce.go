package audit

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Coalescer records repeated entries, such as refused sign-ins of a locked
// account or a throttled address, once per key and window instead of once
// each (issue 8.3): the first entry of a window is recorded at once; the
// repeats are only counted, and the count is recorded as one summary entry
// (the first entry's fields, Details {"repeats": n, "window_start",
// "window_end"}) when the window ends. So a client refused a million times
// a minute adds two rows per window, not a million.
//
// Summaries are written by a timer when a window ends, or by Flush (call it
// before the Recorder closes). It is safe for concurrent use; its table is
// bounded (MaxKeys): past it, new keys share one overflow key per action
// and outcome.
type Coalescer struct {
	rec        Recorder
	window     time.Duration
	maxKeys    int
	now        func() time.Time
	onError    func(error) // a summary could not be recorded
	startTimer bool

	mu   sync.Mutex
	open map[string]*tally
}

// CoalescerOptions configure a Coalescer; zero fields take the defaults.
type CoalescerOptions struct {
	Window  time.Duration    // one summary per key per Window (5 minutes)
	MaxKeys int              // keys counted at once (100000)
	Now     func() time.Time // the clock (time.Now)
	OnError func(error)      // told when a summary write fails (nothing)
	// NoTimer leaves summaries to Flush (tests with a fake clock).
	NoTimer bool
}

type tally struct {
	first   Entry
	start   time.Time
	repeats int
	timer   *time.Timer
}

// NewCoalescer returns a Coalescer writing through rec.
func NewCoalescer(rec Recorder, o CoalescerOptions) *Coalescer {
	c := &Coalescer{rec: rec, window: o.Window, maxKeys: o.MaxKeys, now: o.Now, onError: o.OnError, open: map[string]*tally{}}
	if c.window <= 0 {
		c.window = 5 * time.Minute
	}
	if c.maxKeys <= 0 {
		c.maxKeys = 100000
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.onError == nil {
		c.onError = func(error) {}
	}
	if !o.NoTimer {
		c.startTimer = true
	}
	return c
}

// Record records e if it is the first for key in the current window, and
// otherwise only counts it. The key says what counts as a repeat (for
// example action, outcome, address and account).
func (c *Coalescer) Record(ctx context.Context, key string, e Entry) error {
	now := c.now()
	c.mu.Lock()
	if _, ok := c.open[key]; !ok && len(c.open) >= c.maxKeys {
		key = "overflow:" + e.Action + ":" + e.Outcome
	}
	t := c.open[key]
	if t != nil && now.Before(t.start.Add(c.window)) {
		t.repeats++
		c.mu.Unlock()
		return nil
	}
	ended := c.closeLocked(key, t)
	nt := &tally{first: e, start: now}
	c.open[key] = nt
	if c.startTimer {
		nt.timer = time.AfterFunc(c.window, func() { c.expire(key, nt) })
	}
	c.mu.Unlock()
	c.summarize(ctx, ended)
	return c.rec.Record(ctx, e)
}

// Flush records the summaries of every window with repeats and forgets
// all windows.
func (c *Coalescer) Flush(ctx context.Context) {
	c.mu.Lock()
	var ended []*tally
	for key, t := range c.open {
		if s := c.closeLocked(key, t); s != nil {
			ended = append(ended, s)
		}
	}
	c.mu.Unlock()
	for _, t := range ended {
		c.summarize(ctx, t)
	}
}

// expire ends key's window t when its time is up (unless a newer window
// replaced it).
func (c *Coalescer) expire(key string, t *tally) {
	c.mu.Lock()
	var ended *tally
	if c.open[key] == t {
		ended = c.closeLocked(key, t)
	}
	c.mu.Unlock()
	c.summarize(context.Background(), ended)
}

// closeLocked forgets key's window t and returns it if it has repeats to
// summarise. c.mu is held.
func (c *Coalescer) closeLocked(key string, t *tally) *tally {
	if t == nil {
		return nil
	}
	delete(c.open, key)
	if t.timer != nil {
		t.timer.Stop()
	}
	if t.repeats == 0 {
		return nil
	}
	return t
}

func (c *Coalescer) summarize(_ context.Context, t *tally) {
	if t == nil {
		return
	}
	e := t.first
	e.Seq, e.Time, e.Correlation = 0, time.Time{}, ""
	e.Details = map[string]string{
		"repeats":      strconv.Itoa(t.repeats),
		"window_start": t.start.UTC().Format(time.RFC3339),
		"window_end":   t.start.Add(c.window).UTC().Format(time.RFC3339),
	}
	// Not the triggering request's context: the summary is not part of it.
	if err := c.rec.Record(context.Background(), e); err != nil {
		c.onError(err)
	}
}
