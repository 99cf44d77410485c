package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/outbound"
)

// Health for load balancers (issue 11.5), on the portal listener:
//
//   - GET /healthz: the process is up and serving (200 "ok"), until the
//     listener closes;
//   - GET /readyz: this node can do its work: the database answers, its
//     schema is the one this binary embeds, and Redis and the smarthost
//     answer when configured. 200 {"status":"ready",...} or 503
//     {"status":"not-ready",...}; 503 at once while the node is stopping,
//     so the balancer sends it nothing new.
//
// Neither needs a session, and neither says more than a check's name and
// "ok" or "failing": no PHI, no addresses, no error text (a check's error
// is logged when its state changes). They are served before the portal's
// handler so that they answer JSON even while the portal itself answers
// every request with 503 (Redis down, portal/unavailable.go).

const (
	// readyCacheFor: a burst of probes (several balancers, each checking
	// every second or two) costs one round of checks per window.
	readyCacheFor = time.Second
	// checkTimeout bounds each check, so /readyz answers within about
	// this long even when a service hangs.
	checkTimeout = 2 * time.Second
	// smarthostEvery: the smarthost is probed (a session opened as a send
	// would: EHLO, STARTTLS, AUTH, QUIT) at most this often; in between its
	// last result stands. A probe per readiness check would be a session
	// per second per node on someone else's mail server.
	smarthostEvery = 15 * time.Second
)

// healthCheck is one named readiness check.
type healthCheck struct {
	name string
	run  func(ctx context.Context) error
}

// readyReport is /readyz's body.
type readyReport struct {
	Status   string            `json:"status"` // "ready" or "not-ready"
	Checks   map[string]string `json:"checks"` // name -> "ok" or "failing"
	Draining bool              `json:"draining,omitempty"`
}

// readiness runs the checks at most once per readyCacheFor, one round at a
// time: probes arriving during a round wait for its result.
type readiness struct {
	checks   []healthCheck
	log      func(msg string, args ...any)
	draining atomic.Bool
	drained  chan struct{} // closed when draining starts
	// skipDelay, closed, ends server.drain_delay early (tests).
	skipDelay chan struct{}

	mu      sync.Mutex
	now     func() time.Time
	onRound func() // test hook: called once per round of checks
	at      time.Time
	last    readyReport
	failing map[string]bool // per check, as of the last round (for logging changes)
	round   chan struct{}   // non-nil while a round runs; closed when it ends
}

// readiness builds the checks that apply to this configuration.
func (g *Gateway) newReadiness(ctx context.Context) *readiness {
	r := &readiness{now: time.Now, drained: make(chan struct{}), skipDelay: make(chan struct{}), failing: map[string]bool{},
		log: func(msg string, args ...any) { g.Log.Warn(msg, args...) }}
	db := g.Store.DB()
	r.checks = append(r.checks,
		healthCheck{"database", func(ctx context.Context) error {
			var one int
			return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		}},
		healthCheck{"migrations", g.Store.MigrationsCurrent})
	if g.Redis != nil {
		r.checks = append(r.checks, healthCheck{"redis", func(ctx context.Context) error {
			// While the guard has Redis marked down this fails at once;
			// its own probe marks it up again.
			return g.Redis.Ping(ctx).Err()
		}})
	}
	if p, ok := g.Dispatcher.Sender.(outbound.Prober); ok {
		c := &cachedProbe{probe: p.Probe, every: smarthostEvery, ctx: ctx}
		r.checks = append(r.checks, healthCheck{"smarthost", func(ctx context.Context) error { return c.check(ctx, r.clock()) }})
	}
	return r
}

func (r *readiness) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now()
}

// beginDrain makes /readyz answer 503 from now on.
func (r *readiness) beginDrain() {
	if r.draining.CompareAndSwap(false, true) {
		close(r.drained)
	}
}

// report returns the current readiness, running a round of checks if the
// cached one is older than readyCacheFor.
func (r *readiness) report(ctx context.Context) readyReport {
	r.mu.Lock()
	for {
		if r.round == nil && !r.at.IsZero() && r.now().Sub(r.at) < readyCacheFor {
			rep := r.last
			r.mu.Unlock()
			return rep
		}
		if r.round == nil {
			break
		}
		// Another probe's round is under way: take its result.
		wait := r.round
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return readyReport{Status: "not-ready"}
		}
		r.mu.Lock()
		if !r.at.IsZero() {
			rep := r.last
			r.mu.Unlock()
			return rep
		}
	}
	r.round = make(chan struct{})
	hook := r.onRound
	r.mu.Unlock()
	if hook != nil {
		hook()
	}
	// The round belongs to every probe waiting on it, not to the one
	// that started it: a client going away must not fail it.
	results := r.runChecks(context.WithoutCancel(ctx))
	rep := readyReport{Status: "ready", Checks: map[string]string{}}
	r.mu.Lock()
	for name, err := range results {
		rep.Checks[name] = "ok"
		if err != nil {
			rep.Checks[name], rep.Status = "failing", "not-ready"
		}
		if was := r.failing[name]; was != (err != nil) {
			// Logged when a check changes, not per probe.
			if err != nil {
				r.log("readiness check failing", "check", name, "err", err)
			} else {
				r.log("readiness check ok again", "check", name)
			}
		}
		r.failing[name] = err != nil
	}
	r.last, r.at = rep, r.now()
	close(r.round)
	r.round = nil
	r.mu.Unlock()
	return rep
}

// runChecks runs every check at once, each bounded by checkTimeout.
func (r *readiness) runChecks(ctx context.Context) map[string]error {
	errs := make([]error, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			errs[i] = c.run(cctx)
		})
	}
	wg.Wait()
	out := make(map[string]error, len(r.checks))
	for i, c := range r.checks {
		out[c.name] = errs[i]
	}
	return out
}

// cachedProbe keeps the result of the last probe and starts a new one in
// the background when it is older than every. A check waits for a probe
// under way only as long as its own bound, then takes the last result: a
// slow smarthost (greeting delays are common) does not hold /readyz. Only
// before the first result does it wait up to probeTimeout.
type cachedProbe struct {
	probe func(ctx context.Context) error
	every time.Duration
	ctx   context.Context // the gateway's: a stop ends a probe under way

	mu      sync.Mutex
	have    bool
	at      time.Time // when the last finished probe began
	err     error
	running chan struct{} // non-nil while a probe runs; closed when it ends
}

// probeTimeout bounds one smarthost probe (dial, EHLO, STARTTLS, AUTH).
const probeTimeout = 10 * time.Second

func (c *cachedProbe) check(ctx context.Context, now time.Time) error {
	c.mu.Lock()
	if c.have && now.Sub(c.at) < c.every {
		defer c.mu.Unlock()
		return c.err
	}
	if c.running == nil {
		done := make(chan struct{})
		c.running = done
		go func() {
			pctx, cancel := context.WithTimeout(c.ctx, probeTimeout)
			err := c.probe(pctx)
			cancel()
			c.mu.Lock()
			c.have, c.at, c.err, c.running = true, now, err, nil
			c.mu.Unlock()
			close(done)
		}()
	}
	wait, have := c.running, c.have
	c.mu.Unlock()
	if !have {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
		defer cancel()
	}
	select {
	case <-wait:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.have {
		return errors.New("no smarthost probe has finished yet")
	}
	return c.err
}

// withHealth serves /healthz and /readyz itself and hands every other
// request to h.
func (g *Gateway) withHealth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/healthz" && req.URL.Path != "/readyz" {
			h.ServeHTTP(w, req)
			return
		}
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if req.URL.Path == "/healthz" {
			hd.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("ok\n"))
			return
		}
		rep := readyReport{Status: "not-ready", Checks: map[string]string{}, Draining: true}
		if !g.health.draining.Load() {
			rep = g.health.report(req.Context())
		}
		st := http.StatusOK
		if rep.Status != "ready" {
			st = http.StatusServiceUnavailable
		}
		hd.Set("Content-Type", "application/json")
		w.WriteHeader(st)
		json.NewEncoder(w).Encode(rep)
	})
}

// drainFirst, at the start of a stop, makes /readyz answer 503 and, for
// server.drain_delay, goes on serving everything, so load balancers take
// the node out before its listeners close (a balancer that only notices
// refused connections would send some clients to a closing node).
func (g *Gateway) drainFirst() {
	if g.health == nil {
		return // never started
	}
	g.health.beginDrain()
	d := g.Cfg.Server.DrainDelay.Duration
	if d <= 0 {
		return
	}
	g.Log.Info("stopping: readiness answers 503, still serving until the drain delay ends", "drain_delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-g.health.skipDelay:
	}
}
