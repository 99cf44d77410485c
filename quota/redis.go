package quota

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis key layout (prefix as given to NewRedis, e.g. "phigate:quota:"):
//
//	prefix+"c:"+account  sorted set: transaction id -> lease end (ms)  TTL Lease
//	prefix+"r:"+account  sorted set: transaction id -> reserved at (ms) TTL Window
//
// Times are the calling node's clock: a few seconds of skew between nodes
// moves an hour's window by as much, which is harmless. On Redis Cluster
// give the prefix a hash tag ("{phigate}:quota:") so both keys share a slot.
type redisBackend struct {
	rdb    redis.UniversalClient
	prefix string
	cfg    Config
}

// NewRedis returns Limits counted in Redis, shared by every node using the
// same prefix; now is the clock (time.Now when nil). While Redis cannot be
// reached, Begin counts in this process instead: mail goes on during an
// outage, each node holding the account to the limits on its own.
func NewRedis(rdb redis.UniversalClient, prefix string, cfg Config, now func() time.Time) *Limits {
	cfg = cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	return &Limits{cfg: cfg, now: now, b: &redisBackend{rdb: rdb, prefix: prefix, cfg: cfg},
		local: &memory{cfg: cfg, acc: map[string]*usage{}}}
}

func (r *redisBackend) keys(account string) []string {
	return []string{r.prefix + "c:" + account, r.prefix + "r:" + account}
}

// beginScript checks and takes both in one atomic step.
// KEYS: c, r; ARGV: id, now ms, lease ms, window ms, concurrent, per hour.
// Returns {0, 0} (taken), {1, 0} (busy) or {2, retry after ms} (rate).
var beginScript = redis.NewScript(`
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
local conc, hour = tonumber(ARGV[5]), tonumber(ARGV[6])
if conc > 0 and redis.call('ZCARD', KEYS[1]) >= conc then
  return {1, 0}
end
if hour > 0 and redis.call('ZCARD', KEYS[2]) >= hour then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, tonumber(oldest[2]) + tonumber(ARGV[4]) - now}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if hour > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return {0, 0}
`)

func (r *redisBackend) begin(ctx context.Context, account, id string, now time.Time) error {
	res, err := beginScript.Run(ctx, r.rdb, r.keys(account), id, now.UnixMilli(), r.cfg.Lease.Milliseconds(),
		Window.Milliseconds(), r.cfg.Concurrent, r.cfg.MessagesPerHour).Int64Slice()
	if err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("quota: unexpected reply %v", res)
	}
	switch res[0] {
	case 1:
		return &BusyError{Limit: r.cfg.Concurrent}
	case 2:
		return &RateError{Limit: r.cfg.MessagesPerHour, RetryAfter: time.Duration(res[1]) * time.Millisecond}
	}
	return nil
}

// renewScript moves a slot's lease end if the slot is still held.
// KEYS: c; ARGV: id, now ms, lease ms.
var renewScript = redis.NewScript(`
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if lease and tonumber(lease) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
`)

func (r *redisBackend) renew(ctx context.Context, account, id string, now time.Time) error {
	if err := renewScript.Run(ctx, r.rdb, r.keys(account)[:1], id, now.UnixMilli(), r.cfg.Lease.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	return nil
}

func (r *redisBackend) end(ctx context.Context, account, id string, sent bool) error {
	k := r.keys(account)
	p := r.rdb.TxPipeline()
	p.ZRem(ctx, k[0], id)
	if !sent {
		p.ZRem(ctx, k[1], id)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("quota: %w", err)
	}
	return nil
}
