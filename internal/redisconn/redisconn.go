// Package redisconn builds the gateway's Redis client so that a Redis outage
// fails closed, fast and without harm (issue 9.4):
//
//   - every operation is bounded (dial, read, write, pool wait and retries all
//     fit in Options.Timeout), so a stopped or hung Redis costs a request
//     about a second, not minutes;
//   - an error that means "Redis did not answer" is wrapped so that
//     errors.Is(err, ErrUnavailable) holds: callers answer 503 and keep the
//     session cookie, instead of treating it as "no such session" or "bad
//     password";
//   - the first such error marks Redis down: later operations fail at once
//     (no request waits on a Redis known to be gone) while a probe pings it
//     every Options.Probe; the first answer to a probe marks it up again
//     (only a probe: a reply to an operation begun before the outage must
//     not make the state flap). Each change
//     is logged once and handed to Options.OnChange (the gateway audits it,
//     which raises a security/ops alert), never once per request.
//
// A Redis error reply (WRONGTYPE, NOSCRIPT, a script error) is not an
// outage: Redis answered. Nor is a caller's own cancellation.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable matches (errors.Is) every error that means Redis could not
// be reached or did not answer in time.
var ErrUnavailable = errors.New("redis unavailable")

// Defaults for Options.
const (
	DefaultTimeout = time.Second
	DefaultProbe   = time.Second
)

// Options tune the guard; zero fields take the defaults.
type Options struct {
	// Timeout bounds one operation from the pool wait to the reply,
	// retries included (DefaultTimeout).
	Timeout time.Duration
	// Probe is how often a Redis marked down is pinged (DefaultProbe).
	Probe time.Duration
	Log   *slog.Logger // nil: slog.Default()
	// OnChange, if set, hears each change: up false when Redis was marked
	// down (cause says why), up true when it answers again (down says for
	// how long it was gone). It runs outside the guard's lock, in the
	// goroutine that saw the change.
	OnChange func(ctx context.Context, up bool, down time.Duration, cause error)
	Now      func() time.Time // nil: time.Now
}

// Guard watches one client; see the package comment.
type Guard struct {
	opt Options
	rdb *redis.Client

	down  atomic.Bool // read on every operation and every portal request
	mu    sync.Mutex  // serialises the changes of state
	since time.Time
}

// New returns a client for opt with bounded timeouts and the guard's hook,
// and the guard. Call Run to probe while Redis is down.
func New(opt *redis.Options, o Options) (*redis.Client, *Guard) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Probe <= 0 {
		o.Probe = DefaultProbe
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	// Socket deadlines follow the per-operation context deadline the hook
	// sets, so retries cannot stretch an operation past Timeout.
	opt.ContextTimeoutEnabled = true
	// A refused connection is a clear answer: do not dial it again and
	// again within one attempt (the command retries still try afresh).
	opt.DialerRetries = 1
	quietOnce.Do(func() { redis.SetLogger(quietLogger{}) })
	g := &Guard{opt: o}
	g.rdb = redis.NewClient(opt)
	g.rdb.AddHook(g)
	return g.rdb, g
}

var quietOnce sync.Once

// quietLogger takes go-redis's own log lines (one per failed dial, for
// example) down to debug level: during an outage they would repeat for
// every request, and the guard already logs the outage once. It writes to
// slog.Default, the one logger that outlives every gateway in a process.
type quietLogger struct{}

func (quietLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

// Down reports whether Redis is marked down.
func (g *Guard) Down() bool { return g.down.Load() }

// Run pings Redis every Probe while it is marked down, until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(g.opt.Probe)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if g.Down() {
				g.probe(ctx)
			}
		}
	}
}

// probe pings past the fail-fast gate; the hook records the outcome.
func (g *Guard) probe(ctx context.Context) {
	_ = g.rdb.Ping(context.WithValue(ctx, probeKey{}, true)).Err()
}

type probeKey struct{}

func isProbe(ctx context.Context) bool { v, _ := ctx.Value(probeKey{}).(bool); return v }

// unavailableError wraps the cause of an outage.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string        { return "redis unavailable: " + e.cause.Error() }
func (e *unavailableError) Unwrap() error        { return e.cause }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// errMarkedDown is the cause given while Redis is marked down.
var errMarkedDown = errors.New("marked down, waiting for it to answer again")

// outage reports whether err (from an operation whose caller's context is
// parent) means Redis did not answer.
func outage(parent context.Context, err error) bool {
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		return false
	case errors.Is(err, ErrUnavailable):
		return true
	}
	if parent.Err() != nil {
		return false // the caller gave up (client went away): not Redis's fault
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		// Redis answered; only these replies mean it cannot serve yet.
		msg := rerr.Error()
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "BUSY")
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrClosed)
}

// result classifies an operation's error, records the health it shows and
// returns the error to give the caller (wrapped if it is an outage).
func (g *Guard) result(ctx, parent context.Context, err error) error {
	if outage(parent, err) {
		g.markDown(ctx, err)
		if !errors.Is(err, ErrUnavailable) {
			err = &unavailableError{cause: err}
		}
		return err
	}
	if isProbe(parent) {
		g.markUp(ctx)
	}
	return err
}

func (g *Guard) markDown(ctx context.Context, cause error) {
	g.mu.Lock()
	if g.down.Load() {
		g.mu.Unlock()
		return
	}
	g.since = g.opt.Now()
	g.down.Store(true)
	g.mu.Unlock()
	g.opt.Log.ErrorContext(ctx, "redis unavailable: portal sign-in and sessions answer 503 until it returns; SMTP intake continues",
		"err", cause)
	if g.opt.OnChange != nil {
		g.opt.OnChange(context.WithoutCancel(ctx), false, 0, cause)
	}
}

func (g *Guard) markUp(ctx context.Context) {
	g.mu.Lock()
	if !g.down.Load() {
		g.mu.Unlock()
		return
	}
	down := g.opt.Now().Sub(g.since)
	g.down.Store(false)
	g.mu.Unlock()
	g.opt.Log.WarnContext(ctx, "redis available again: portal sign-in and sessions resume", "down_for", down.Round(time.Millisecond))
	if g.opt.OnChange != nil {
		g.opt.OnChange(context.WithoutCancel(ctx), true, down, nil)
	}
}

// gate refuses an operation at once while Redis is marked down (probes
// pass), and otherwise bounds it by Timeout.
func (g *Guard) gate(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if !isProbe(ctx) && g.Down() {
		return ctx, func() {}, &unavailableError{cause: errMarkedDown}
	}
	ctx, cancel := context.WithTimeout(ctx, g.opt.Timeout)
	return ctx, cancel, nil
}

func (g *Guard) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *Guard) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(parent context.Context, cmd redis.Cmder) error {
		ctx, cancel, err := g.gate(parent)
		defer cancel()
		if err == nil {
			err = next(ctx, cmd)
			if err == nil {
				err = cmd.Err()
			}
		}
		err = g.result(ctx, parent, err)
		if errors.Is(err, ErrUnavailable) {
			cmd.SetErr(err)
		}
		return err
	}
}

func (g *Guard) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(parent context.Context, cmds []redis.Cmder) error {
		ctx, cancel, err := g.gate(parent)
		defer cancel()
		if err == nil {
			err = next(ctx, cmds)
		}
		err = g.result(ctx, parent, err)
		if errors.Is(err, ErrUnavailable) {
			for _, c := range cmds {
				c.SetErr(err)
			}
		}
		return err
	}
}
