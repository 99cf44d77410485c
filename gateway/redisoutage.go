package gateway

import (
	"context"
	"time"

	"github.com/phigate/phigate/alert"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/internal/redisconn"
	"github.com/phigate/phigate/portal"
	"github.com/redis/go-redis/v9"
)

// openRedis returns the client for redis.url with bounded operations and
// the guard that marks Redis down and up (internal/redisconn).
func (g *Gateway) openRedis(opt *redis.Options) {
	g.Redis, g.RedisGuard = redisconn.New(opt, redisconn.Options{Timeout: g.Cfg.Redis.Timeout.Duration,
		Probe: g.Cfg.Redis.ProbeInterval.Duration, Log: g.Log, OnChange: g.redisChanged})
}

// watchRedis lets the portal refuse at once while Redis is down, reports
// it as phigate_redis_up, bounds the wait for a live-event subscription,
// and probes Redis until ctx ends.
func (g *Gateway) watchRedis(ctx context.Context, ps *portal.Server) {
	if g.RedisGuard == nil {
		return
	}
	ps.RedisDown = g.RedisGuard.Down
	g.Metrics.RedisUpFunc(func() bool { return !g.RedisGuard.Down() })
	if b, ok := g.Bus.(*events.Redis); ok {
		b.SubscribeTimeout = g.Cfg.Redis.Timeout.Duration
	}
	g.goRun(func() { g.RedisGuard.Run(ctx) })
}

// redisChanged audits an outage (outcome "failed", which raises the
// security officer's "redis-outage" alert) and its end ("ok"), once each:
// the guard calls it on a change of state, never per request. HIPAA
// 164.308(a)(7), contingency: the outage and its end are on record.
func (g *Gateway) redisChanged(ctx context.Context, up bool, down time.Duration, _ error) {
	if g.Audit == nil {
		return
	}
	e := audit.Entry{Actor: "system", Action: alert.ActionRedis, ObjectType: "redis", Outcome: "failed",
		Details: map[string]string{"state": "down"}}
	if up {
		e.Outcome, e.Details = "ok", map[string]string{"state": "up", "down_for": down.Round(time.Millisecond).String()}
	}
	if err := g.Audit.Record(ctx, e); err != nil {
		g.Log.ErrorContext(ctx, "audit redis state", "err", err)
	}
}
