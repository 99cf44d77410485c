package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store shared by every node on one Redis.
//
// Key layout (prefix as given to NewRedis, for example "phigate:sess:");
// every key has a TTL, none is ever written without one:
//
//	prefix+"s:"+id      hash: u user id, r role, k wrapped key, h secret MAC,
//	                    c created, l last seen (Unix ns), m "1" if MFA done,
//	                    v SealVersion, a the seal (Record.Seal)
//	                    TTL idle, slid by Touch
//	prefix+"u:"+userID  set of the user's session ids (one, but for races)
//	                    TTL idle, slid by Touch
//	prefix+"e:"+id      tombstone: why the session ended
//	                    TTL 1h after the end; while the session is live it
//	                    already says "idle" with TTL idle+1h, so a session
//	                    that Redis expires is remembered as timed out
//
// Nothing in it is PHI: ids, the role, times, ciphertext and MACs. A record
// without v = SealVersion (written by an older phigate) reads as
// ErrNoSession.
// Every change is one Lua script, so it is atomic across nodes. The scripts
// name keys they compute: on Redis Cluster give the prefix a hash tag
// ("{phigate}:sess:") so that all of them share one slot.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRedis returns a Store in rdb under prefix.
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix}
}

func (s *Redis) sKey(id string) string  { return s.prefix + "s:" + id }
func (s *Redis) uKey(uid string) string { return s.prefix + "u:" + uid }
func (s *Redis) eKey(id string) string  { return s.prefix + "e:" + id }
func ms(d time.Duration) int64          { return max(d.Milliseconds(), 1) }
func nanos(t time.Time) string          { return strconv.FormatInt(t.UnixNano(), 10) }

func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// KEYS: s:id, u:uid, e:id. ARGV: prefix, id, idle ms, tombstone ms,
// idle+tombstone ms, uid, role, wrapped key, secret hash, created, last
// seen, mfa, seal version, seal. Returns the ids it ended.
var putScript = redis.NewScript(`
local replaced = {}
if ARGV[12] == '1' then
  for _, old in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if old ~= ARGV[2] then
      if redis.call('DEL', ARGV[1] .. 's:' .. old) == 1 then
        redis.call('SET', ARGV[1] .. 'e:' .. old, 'replaced', 'PX', ARGV[4])
        table.insert(replaced, old)
      end
      redis.call('SREM', KEYS[2], old)
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'u', ARGV[6], 'r', ARGV[7], 'k', ARGV[8], 'h', ARGV[9],
  'c', ARGV[10], 'l', ARGV[11], 'm', ARGV[12], 'v', ARGV[13], 'a', ARGV[14])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[3], 'idle', 'PX', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return replaced
`)

// KEYS: s:id, e:id. ARGV: prefix, last seen, idle ms, idle+tombstone ms,
// seal. Returns {1, ""} or, if not live, {0, tombstone or ""}.
var touchScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, redis.call('GET', KEYS[2]) or ''}
end
redis.call('HSET', KEYS[1], 'l', ARGV[2], 'a', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], 'idle', 'PX', ARGV[4])
local uid = redis.call('HGET', KEYS[1], 'u')
if uid then
  redis.call('PEXPIRE', ARGV[1] .. 'u:' .. uid, ARGV[3])
end
return {1, ''}
`)

// KEYS: s:id, e:id. ARGV: prefix, id, reason, tombstone ms.
// Returns {1, ""} or, if not live, {0, tombstone or ""}.
var endScript = redis.NewScript(`
local uid = redis.call('HGET', KEYS[1], 'u')
if redis.call('DEL', KEYS[1]) == 0 then
  return {0, redis.call('GET', KEYS[2]) or ''}
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
if uid then
  redis.call('SREM', ARGV[1] .. 'u:' .. uid, ARGV[2])
end
return {1, ''}
`)

// KEYS: u:uid. ARGV: prefix, reason, tombstone ms. Returns the ids ended.
var endUserScript = redis.NewScript(`
local ended = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('DEL', ARGV[1] .. 's:' .. id) == 1 then
    redis.call('SET', ARGV[1] .. 'e:' .. id, ARGV[2], 'PX', ARGV[3])
    table.insert(ended, id)
  end
end
redis.call('DEL', KEYS[1])
return ended
`)

func (s *Redis) Put(ctx context.Context, r Record, idle time.Duration) ([]string, error) {
	if idle <= 0 {
		return nil, errIdle
	}
	if r.ID == "" || r.UserID == "" {
		return nil, errors.New("session: record without id or user id")
	}
	return putScript.Run(ctx, s.rdb, []string{s.sKey(r.ID), s.uKey(r.UserID), s.eKey(r.ID)},
		s.prefix, r.ID, ms(idle), ms(TombstoneTTL), ms(idle+TombstoneTTL),
		r.UserID, r.Role, r.WrappedKey, r.SecretHash, nanos(r.Created), nanos(r.LastSeen), boolFlag(r.MFA),
		sealVersion, r.Seal,
	).StringSlice()
}

func (s *Redis) Get(ctx context.Context, id string) (*Record, error) {
	var h *redis.MapStringStringCmd
	var e *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		h = p.HGetAll(ctx, s.sKey(id))
		e = p.Get(ctx, s.eKey(id))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	if m := h.Val(); len(m) > 0 {
		return decode(id, m)
	}
	return nil, notLive(e.Val())
}

// notLive is the error for an id that is not live, given its tombstone.
func notLive(reason string) error {
	if reason == "" {
		return ErrNoSession
	}
	return &EndedError{Reason: reason}
}

var sealVersion = strconv.Itoa(SealVersion)

func decode(id string, m map[string]string) (*Record, error) {
	if m["v"] != sealVersion {
		// Written under an older rule (no seal): see SealVersion.
		return nil, fmt.Errorf("%w (record from an older version in Redis)", ErrNoSession)
	}
	c, err1 := strconv.ParseInt(m["c"], 10, 64)
	l, err2 := strconv.ParseInt(m["l"], 10, 64)
	if err1 != nil || err2 != nil || m["u"] == "" || m["h"] == "" || m["k"] == "" {
		// Unusable, so as good as absent: the holder signs in again.
		return nil, fmt.Errorf("%w (damaged record in Redis)", ErrNoSession)
	}
	return &Record{ID: id, UserID: m["u"], Role: m["r"], WrappedKey: []byte(m["k"]),
		SecretHash: []byte(m["h"]), Created: time.Unix(0, c), LastSeen: time.Unix(0, l), MFA: m["m"] == "1",
		Seal: []byte(m["a"])}, nil
}

// flagged runs a touch/end script and turns {0, tombstone} into an error.
func (s *Redis) flagged(ctx context.Context, sc *redis.Script, keys []string, args ...any) error {
	res, err := sc.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return err
	}
	if len(res) != 2 {
		return errors.New("session: unexpected reply from Redis")
	}
	if ok, _ := res[0].(int64); ok == 1 {
		return nil
	}
	reason, _ := res[1].(string)
	return notLive(reason)
}

func (s *Redis) Touch(ctx context.Context, id string, at time.Time, seal []byte, idle time.Duration) error {
	if idle <= 0 {
		return errIdle
	}
	return s.flagged(ctx, touchScript, []string{s.sKey(id), s.eKey(id)},
		s.prefix, nanos(at), ms(idle), ms(idle+TombstoneTTL), seal)
}

func (s *Redis) End(ctx context.Context, id, reason string) error {
	if reason == "" {
		return errNoReason
	}
	return s.flagged(ctx, endScript, []string{s.sKey(id), s.eKey(id)},
		s.prefix, id, reason, ms(TombstoneTTL))
}

func (s *Redis) EndUser(ctx context.Context, userID, reason string) ([]string, error) {
	if reason == "" {
		return nil, errNoReason
	}
	return endUserScript.Run(ctx, s.rdb, []string{s.uKey(userID)}, s.prefix, reason, ms(TombstoneTTL)).StringSlice()
}

// Count counts the live session records (a SCAN: for metrics, not for
// every request).
func (s *Redis) Count(ctx context.Context) (int, error) {
	pattern := globEscape(s.prefix) + "s:*"
	count := func(ctx context.Context, c redis.Cmdable) (int, error) {
		n := 0
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			n++
		}
		return n, it.Err()
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var total atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			n, err := count(ctx, c)
			total.Add(int64(n))
			return err
		})
		return int(total.Load()), err
	}
	return count(ctx, s.rdb)
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
