package gateway_test

// Health for load balancers (issue 11.5): /healthz and /readyz on the
// portal listener, over real sockets, with a real Redis, database and
// smarthost.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/internal/smtppeer"
	"github.com/phigate/phigate/internal/testclock"
)

// healthRun is a gateway on a private Redis with a smarthost, its
// readiness on a test clock that counts rounds of checks.
type healthRun struct {
	h      *e2e.Harness
	redis  *redistest.Server
	peer   *smtppeer.Peer
	clock  *testclock.Clock
	rounds atomic.Int64
	http   *http.Client // no cookie jar: probes carry no session
}

func startHealthRun(t *testing.T, edit func(*config.Config)) *healthRun {
	t.Helper()
	r := &healthRun{redis: redistest.Start(t), peer: smtppeer.Start(t), clock: testclock.New(time.Unix(1_800_000_000, 0))}
	cfg := nodeConfig(t.TempDir())
	cfg.Redis.URL = "redis://" + r.redis.Addr + "/0"
	cfg.Redis.ProbeInterval = config.Duration{Duration: 50 * time.Millisecond}
	cfg.Smarthost.Addr, cfg.Smarthost.CAFile = r.peer.Addr, r.peer.CAFile(t)
	if edit != nil {
		edit(&cfg)
	}
	r.h = e2e.Start(t, cfg)
	gateway.SetHealthClock(r.h.G, r.clock.Now, func() { r.rounds.Add(1) })
	// HTTP/2: a burst of probes shares one connection, as a balancer's would.
	r.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	t.Cleanup(r.http.CloseIdleConnections)
	return r
}

// get fetches path without a cookie and checks the answer carries none.
func (r *healthRun) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := r.http.Get(r.h.BaseURL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
		t.Errorf("GET %s set a cookie: %q", path, c)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET %s: Cache-Control %q", path, cc)
	}
	return resp.StatusCode, b.Bytes()
}

type readyBody struct {
	Status   string            `json:"status"`
	Checks   map[string]string `json:"checks"`
	Draining bool              `json:"draining"`
}

// ready fetches /readyz after stepping the clock past the cache window
// (and the smarthost probe's, when probe is set), and checks the body
// holds nothing but check names, "ok" and "failing".
func (r *healthRun) ready(t *testing.T, probe bool) (int, readyBody) {
	t.Helper()
	step := gateway.ReadyCacheFor
	if probe {
		step = gateway.SmarthostEvery
	}
	r.clock.Add(step)
	st, b := r.get(t, "/readyz")
	return st, decodeReady(t, st, b)
}

func decodeReady(t *testing.T, st int, b []byte) readyBody {
	t.Helper()
	var rb readyBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rb); err != nil {
		t.Fatalf("/readyz body %q: %v", b, err)
	}
	for name, v := range rb.Checks {
		if v != "ok" && v != "failing" {
			t.Errorf("/readyz check %s = %q: only ok or failing may show", name, v)
		}
	}
	if want := map[bool]int{true: 200, false: 503}[rb.Status == "ready"]; st != want {
		t.Errorf("/readyz status %d with body %s", st, b)
	}
	return rb
}

// wantChecks checks every configured check is there with the given state.
func wantChecks(t *testing.T, what string, rb readyBody, want map[string]string) {
	t.Helper()
	if len(rb.Checks) != len(want) {
		t.Errorf("%s: checks %v, want %v", what, rb.Checks, want)
	}
	for k, v := range want {
		if rb.Checks[k] != v {
			t.Errorf("%s: check %s = %q, want %q (all: %v)", what, k, rb.Checks[k], v, rb.Checks)
		}
	}
}

var allOK = map[string]string{"database": "ok", "migrations": "ok", "redis": "ok", "smarthost": "ok"}

func TestHealthReadyAndDependencies(t *testing.T) {
	r := startHealthRun(t, nil)
	if st, b := r.get(t, "/healthz"); st != 200 || string(b) != "ok\n" {
		t.Fatalf("/healthz: %d %q", st, b)
	}
	st, rb := r.ready(t, false)
	if st != 200 || rb.Status != "ready" {
		t.Fatalf("healthy gateway: %d %+v", st, rb)
	}
	wantChecks(t, "healthy", rb, allOK)

	// Redis stopped: not ready; the body names the check, not the error.
	r.redis.Stop()
	st, rb = r.ready(t, false)
	if st != 503 || rb.Status != "not-ready" {
		t.Fatalf("redis stopped: %d %+v", st, rb)
	}
	wantChecks(t, "redis stopped", rb, map[string]string{"database": "ok", "migrations": "ok", "redis": "failing", "smarthost": "ok"})
	if !bytes.Contains(r.h.Logs.Bytes(), []byte("readiness check failing")) {
		t.Error("the failing check was not logged")
	}
	// /healthz is about the process only.
	if st, _ := r.get(t, "/healthz"); st != 200 {
		t.Errorf("/healthz with redis stopped: %d", st)
	}
	r.redis.Restart(t)
	for r.h.G.RedisGuard.Down() {
		// The guard's own probe (every 50 ms here) marks Redis up.
		time.Sleep(20 * time.Millisecond)
	}
	if st, rb = r.ready(t, false); st != 200 {
		t.Fatalf("redis back: %d %+v", st, rb)
	}

	// Smarthost down: noticed at its next probe, not before.
	r.peer.Down()
	if st, rb = r.ready(t, false); st != 200 {
		t.Errorf("within the smarthost probe's window the last result stands: %d %+v", st, rb)
	}
	st, rb = r.ready(t, true)
	wantChecks(t, "smarthost down", rb, map[string]string{"database": "ok", "migrations": "ok", "redis": "ok", "smarthost": "failing"})
	r.peer.Up()
	if st, rb = r.ready(t, true); st != 200 {
		t.Fatalf("smarthost back: %d %+v", st, rb)
	}

	// A schema newer than this binary's: not ready until it matches.
	db := r.h.G.Store.DB()
	var top int64
	if err := db.QueryRow(`SELECT MAX(version_id) FROM goose_db_version`).Scan(&top); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, top+1); err != nil {
		t.Fatal(err)
	}
	st, rb = r.ready(t, false)
	wantChecks(t, "schema ahead", rb, map[string]string{"database": "ok", "migrations": "failing", "redis": "ok", "smarthost": "ok"})
	if _, err := db.Exec(`DELETE FROM goose_db_version WHERE version_id = $1`, top+1); err != nil {
		t.Fatal(err)
	}
	if st, rb = r.ready(t, false); st != 200 {
		t.Fatalf("schema current again: %d %+v", st, rb)
	}
	if bytes.Contains(r.h.Logs.Bytes(), []byte("readiness check ok again")) == false {
		t.Error("recovery was not logged")
	}
}

func TestHealthDatabaseClosed(t *testing.T) {
	r := startHealthRun(t, nil)
	if st, rb := r.ready(t, false); st != 200 {
		t.Fatalf("before: %d %+v", st, rb)
	}
	r.h.G.Store.DB().Close()
	st, rb := r.ready(t, false)
	if st != 503 || rb.Checks["database"] != "failing" || rb.Checks["migrations"] != "failing" || rb.Checks["redis"] != "ok" {
		t.Fatalf("database closed: %d %+v", st, rb)
	}
}

func TestHealthBurstRunsChecksOncePerWindow(t *testing.T) {
	r := startHealthRun(t, nil)
	// The first round waits for the smarthost's first probe; the burst
	// comes in the next window, with the probe's result fresh.
	if st, rb := r.ready(t, false); st != 200 {
		t.Fatalf("before the burst: %d %+v", st, rb)
	}
	r.clock.Add(gateway.ReadyCacheFor)
	r.rounds.Store(0)
	const probes = 200
	var wg sync.WaitGroup
	var notReady atomic.Int64
	for range probes {
		wg.Go(func() {
			resp, err := r.http.Get(r.h.BaseURL + "/readyz")
			if err != nil {
				t.Error(err)
				return
			}
			var rb readyBody
			json.NewDecoder(resp.Body).Decode(&rb)
			resp.Body.Close()
			if resp.StatusCode != 200 || rb.Status != "ready" {
				if notReady.Add(1) == 1 {
					t.Logf("not ready: %d %+v", resp.StatusCode, rb)
				}
			}
		})
	}
	wg.Wait()
	if n := notReady.Load(); n != 0 {
		t.Errorf("%d of %d probes not ready; log:\n%s", n, probes, r.h.Logs.Bytes())
	}
	// The clock stood still: one window, one round.
	if n := r.rounds.Load(); n != 1 {
		t.Errorf("%d probes ran %d rounds of checks, want 1", probes, n)
	}
	r.clock.Add(gateway.ReadyCacheFor)
	r.get(t, "/readyz")
	r.get(t, "/readyz")
	if n := r.rounds.Load(); n != 2 {
		// (the second GET falls in the same new window)
		t.Errorf("after the window: %d rounds, want 2", n)
	}
}

func TestHealthShutdownFlipsReadiness(t *testing.T) {
	r := startHealthRun(t, func(c *config.Config) { c.Server.DrainDelay = config.Duration{Duration: 5 * time.Minute} })
	if st, _ := r.ready(t, false); st != 200 {
		t.Fatalf("before the stop: %d", st)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.h.G.Close() }()
	<-gateway.Draining(r.h.G)
	// At once, without waiting for the cache window.
	st, b := r.get(t, "/readyz")
	if rb := decodeReady(t, st, b); st != 503 || !rb.Draining {
		t.Errorf("stopping: /readyz %d %s", st, b)
	}
	if st, _ := r.get(t, "/healthz"); st != 200 {
		t.Errorf("stopping, listener still open: /healthz %d", st)
	}
	// Everything else still serves during the drain delay.
	if st, _ := r.get(t, "/login"); st != 200 {
		t.Errorf("stopping, during the drain delay: /login %d", st)
	}
	gateway.EndDrainDelay(r.h.G)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	r.http.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", r.h.BaseURL+"/healthz", nil)
	if resp, err := r.http.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("after the stop /healthz still answers %d", resp.StatusCode)
	}
}
