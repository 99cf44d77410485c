package limiter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis key layout (prefix as given to NewRedis, for example
// "phigate:lim:"); every key has a TTL:
//
//	prefix+"af:"+account  consecutive failures        TTL Lockout after the last failure
//	prefix+"al:"+account  lock; value = end, Unix ms  TTL Lockout from the locking failure
//	prefix+"ap:"+account  attempts in progress        TTL pendingTTL after the last Reserve
//	prefix+"ip:"+address  failures in the window      TTL the rest of the window
//
// The scripts touch several keys at once: on Redis Cluster give the prefix
// a hash tag ("{phigate}:lim:") so that they share a slot.
type redisBackend struct {
	rdb    redis.UniversalClient
	prefix string
	cfg    Config
}

// NewRedis returns a Limiter whose counters live in Redis, shared by every
// node that uses the same prefix. Lock ends are taken from the Redis
// server's clock, so all nodes agree on them.
func NewRedis(rdb redis.UniversalClient, prefix string, cfg Config) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{cfg: cfg, b: &redisBackend{rdb: rdb, prefix: prefix, cfg: cfg}}
}

func (r *redisBackend) keys(account, ip string) []string {
	k := []string{r.prefix + "af:" + account, r.prefix + "al:" + account}
	if ip != "" {
		k = append(k, r.prefix+"ip:"+ip)
	}
	return k
}

func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// KEYS: af, al, [ip]; ARGV: IPMaxFailures.
// Returns {0} (allowed), {1, lock end ms} or {2, retry after ms}.
var checkScript = redis.NewScript(`
local untilms = redis.call('GET', KEYS[2])
if untilms and redis.call('PTTL', KEYS[2]) > 0 then
  return {1, untilms}
end
if KEYS[3] then
  local n = tonumber(redis.call('GET', KEYS[3]) or '0')
  if n >= tonumber(ARGV[1]) then
    local ttl = redis.call('PTTL', KEYS[3])
    if ttl > 0 then return {2, ttl} end
  end
end
return {0}
`)

// KEYS: af, al, [ip]; ARGV: MaxFailures, Lockout ms, IPWindow ms.
// Returns {locked now (0/1), lock end ms or 0}.
var failureScript = redis.NewScript(`
if KEYS[3] then
  local n = redis.call('INCR', KEYS[3])
  if n == 1 or redis.call('PTTL', KEYS[3]) < 0 then
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
end
local untilms = redis.call('GET', KEYS[2])
if untilms then
  -- Locked: neither counted nor extended.
  return {0, untilms}
end
local c = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if c >= tonumber(ARGV[1]) then
  local t = redis.call('TIME')
  local u = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2]))
  redis.call('SET', KEYS[2], u, 'PX', ARGV[2])
  return {1, u}
end
return {0, 0}
`)

// reserveScript is Reserve's atomic step (Redis runs a script
// atomically), so no attempt passes the checks while another is between
// its check and its count.
// KEYS: af, al, ap, [ip]; ARGV: MaxFailures, IPWindow ms, IPMaxFailures,
// pending TTL ms. Returns {0, 0, address count} (admitted; 0 without an
// address), {1, lock end ms} (locked), {2, retry after ms} (throttled) or
// {4, 0} (the account's failures and attempts in progress are full).
var reserveScript = redis.NewScript(`
local untilms = redis.call('GET', KEYS[2])
if untilms and redis.call('PTTL', KEYS[2]) > 0 then
  return {1, untilms}
end
if KEYS[4] then
  local n = tonumber(redis.call('GET', KEYS[4]) or '0')
  if n >= tonumber(ARGV[3]) then
    local ttl = redis.call('PTTL', KEYS[4])
    if ttl > 0 then return {2, ttl} end
  end
end
local f = tonumber(redis.call('GET', KEYS[1]) or '0')
local p = tonumber(redis.call('GET', KEYS[3]) or '0')
if f + p >= tonumber(ARGV[1]) then
  return {4, 0}
end
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
local addr = 0
if KEYS[4] then
  addr = redis.call('INCR', KEYS[4])
  if addr == 1 or redis.call('PTTL', KEYS[4]) < 0 then
    redis.call('PEXPIRE', KEYS[4], ARGV[2])
  end
end
return {0, 0, addr}
`)

// settleScript ends a reservation. DECR keeps a key's TTL.
// KEYS: af, al, ap, [ip]; ARGV: outcome (f, s or r), MaxFailures,
// Lockout ms. Returns {locked now (0/1), lock end ms or 0}, as
// failureScript for a failure (whose address was counted at reserve).
var settleScript = redis.NewScript(`
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then
  redis.call('DECR', KEYS[3])
end
if ARGV[1] ~= 'f' then
  if KEYS[4] and tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then
    redis.call('DECR', KEYS[4])
  end
  if ARGV[1] == 's' then
    redis.call('DEL', KEYS[1])
  end
  return {0, 0}
end
local untilms = redis.call('GET', KEYS[2])
if untilms then
  return {0, untilms}
end
local c = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if c >= tonumber(ARGV[2]) then
  local t = redis.call('TIME')
  local u = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], u, 'PX', ARGV[3])
  return {1, u}
end
return {0, 0}
`)

// KEYS: af, al. Returns {failures, lock end ms or 0}.
var statusScript = redis.NewScript(`
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
local untilms = redis.call('GET', KEYS[2]) or 0
return {c, untilms}
`)

func toInt(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		return strconv.ParseInt(v, 10, 64)
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("limiter: unexpected reply %T", v)
}

// reply runs s and returns its reply as integers.
func (r *redisBackend) reply(ctx context.Context, s *redis.Script, keys []string, args ...any) ([]int64, error) {
	res, err := s.Run(ctx, r.rdb, keys, args...).Slice()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(res))
	for i, v := range res {
		if out[i], err = toInt(v); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("limiter: empty reply")
	}
	return out, nil
}

func unixMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func (r *redisBackend) check(ctx context.Context, account, ip string) error {
	res, err := r.reply(ctx, checkScript, r.keys(account, ip), r.cfg.IPMaxFailures)
	if err != nil {
		return err
	}
	switch {
	case res[0] == 1 && len(res) == 2:
		return &LockedError{Until: unixMS(res[1])}
	case res[0] == 2 && len(res) == 2:
		return &ThrottledError{RetryAfter: time.Duration(res[1]) * time.Millisecond}
	}
	return nil
}

func (r *redisBackend) failure(ctx context.Context, account, ip string) (bool, time.Time, error) {
	res, err := r.reply(ctx, failureScript, r.keys(account, ip),
		r.cfg.MaxFailures, ms(r.cfg.Lockout), ms(r.cfg.IPWindow))
	if err != nil {
		return false, time.Time{}, err
	}
	if len(res) != 2 {
		return false, time.Time{}, errors.New("limiter: unexpected reply")
	}
	return res[0] == 1, unixMS(res[1]), nil
}

// reserveKeys are af, al, ap and, with an address, ip.
func (r *redisBackend) reserveKeys(account, ip string) []string {
	k := []string{r.prefix + "af:" + account, r.prefix + "al:" + account, r.prefix + "ap:" + account}
	if ip != "" {
		k = append(k, r.prefix+"ip:"+ip)
	}
	return k
}

func (r *redisBackend) reserve(ctx context.Context, account, ip string) (int, error) {
	res, err := r.reply(ctx, reserveScript, r.reserveKeys(account, ip),
		r.cfg.MaxFailures, ms(r.cfg.IPWindow), r.cfg.IPMaxFailures, ms(pendingTTL))
	switch {
	case err != nil:
		return 0, err
	case len(res) == 2 && res[0] == 1:
		return 0, &LockedError{Until: unixMS(res[1])}
	case len(res) == 2 && res[0] == 2:
		return 0, &ThrottledError{RetryAfter: time.Duration(res[1]) * time.Millisecond}
	case len(res) == 2 && res[0] == 4:
		return 0, errFull
	case len(res) == 3 && res[0] == 0:
		return int(res[2]), nil
	}
	return 0, errors.New("limiter: unexpected reply")
}

func (r *redisBackend) settle(ctx context.Context, account, ip, outcome string) (bool, time.Time, error) {
	res, err := r.reply(ctx, settleScript, r.reserveKeys(account, ip), outcome, r.cfg.MaxFailures, ms(r.cfg.Lockout))
	if err != nil {
		return false, time.Time{}, err
	}
	if len(res) != 2 {
		return false, time.Time{}, errors.New("limiter: unexpected reply")
	}
	return res[0] == 1, unixMS(res[1]), nil
}

func (r *redisBackend) success(ctx context.Context, account string) error {
	return r.rdb.Del(ctx, r.prefix+"af:"+account).Err()
}

func (r *redisBackend) unlock(ctx context.Context, account string) error {
	return r.rdb.Del(ctx, r.keys(account, "")...).Err()
}

func (r *redisBackend) status(ctx context.Context, account string) (int, time.Time, error) {
	res, err := r.reply(ctx, statusScript, r.keys(account, ""))
	if err != nil {
		return 0, time.Time{}, err
	}
	if len(res) != 2 {
		return 0, time.Time{}, errors.New("limiter: unexpected reply")
	}
	return int(res[0]), unixMS(res[1]), nil
}
