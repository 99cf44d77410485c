package gateway

import "time"

// SetHealthClock gives the readiness cache (and the smarthost probe's)
// a test clock, and a hook called once per round of checks.
func SetHealthClock(g *Gateway, now func() time.Time, onRound func()) {
	g.health.mu.Lock()
	defer g.health.mu.Unlock()
	g.health.now, g.health.onRound = now, onRound
}

// Draining is closed when a stop has made /readyz answer 503.
func Draining(g *Gateway) <-chan struct{} { return g.health.drained }

// EndDrainDelay ends server.drain_delay early.
func EndDrainDelay(g *Gateway) { close(g.health.skipDelay) }

// HealthTimings are the cache windows, for tests that step a clock past them.
const ReadyCacheFor, SmarthostEvery = readyCacheFor, smarthostEvery
