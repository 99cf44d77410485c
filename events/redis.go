package events

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Bus shared by every node on one Redis, over Redis pub/sub (at
// most once: a node that is disconnected while an event is published
// misses it).
//
// A node holds one Redis subscription however many local subscribers it
// has: it is opened by the first Subscribe and closed when the last
// subscriber leaves (or by Close), so an idle bus holds no connection and
// no goroutine.
type Redis struct {
	rdb     redis.UniversalClient
	channel string
	// SubscribeTimeout bounds the wait for Redis to confirm the node's
	// subscription (DefaultSubscribeTimeout if 0). The gateway sets it to
	// redis.timeout: while Redis is down or hung a page's websocket, and
	// every other one waiting behind it, must not hang for long.
	SubscribeTimeout time.Duration

	mu     sync.Mutex // serialises opening and closing the subscription
	cur    *redisSub
	closed bool
	f      fanout
}

type redisSub struct {
	ps   *redis.PubSub
	live atomic.Bool // false once superseded: its reader delivers nothing more
	done chan struct{}
}

// maxPayload bounds what a reader accepts from the channel.
const maxPayload = 4 << 10

// DefaultSubscribeTimeout bounds the wait for Redis to confirm a
// subscription when Redis.SubscribeTimeout is not set.
const DefaultSubscribeTimeout = 5 * time.Second

// NewRedis returns a bus on the Redis pub/sub channel (for example
// "phigate:events"); every node must use the same channel.
func NewRedis(rdb redis.UniversalClient, channel string) *Redis {
	return &Redis{rdb: rdb, channel: channel}
}

func (r *Redis) Publish(ctx context.Context, e Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return r.rdb.Publish(ctx, r.channel, b).Err()
}

// Subscribe returns once Redis has confirmed the node's subscription, so an
// event published (on any node) after it returns is delivered. If Redis
// cannot confirm it within a few seconds (Redis down), Subscribe still
// returns a live subscription: go-redis keeps reconnecting and
// re-subscribing, and events published meanwhile are missed.
func (r *Redis) Subscribe(ctx context.Context) (<-chan Event, func()) {
	return r.subscribe(ctx, "")
}

// SubscribeUser is Subscribe for one account's events (Bus).
func (r *Redis) SubscribeUser(ctx context.Context, userID string) (<-chan Event, func()) {
	return r.subscribe(ctx, userID)
}

func (r *Redis) subscribe(ctx context.Context, user string) (<-chan Event, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		ch := make(chan Event)
		close(ch)
		return ch, func() {}
	}
	if r.cur == nil {
		r.cur = r.open(ctx)
	}
	return r.f.add(ctx, user, r.release)
}

// open subscribes and waits for the confirmation; r.mu is held.
func (r *Redis) open(ctx context.Context) *redisSub {
	wait := r.SubscribeTimeout
	if wait <= 0 {
		wait = DefaultSubscribeTimeout
	}
	// One bound for connecting, subscribing and the confirmation: on a
	// hung Redis each would otherwise wait out the client's own timeouts.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	ps := r.rdb.Subscribe(wctx, r.channel)
	// The first reply on a fresh subscription is its confirmation.
	_, _ = ps.Receive(wctx)
	cancel()
	s := &redisSub{ps: ps, done: make(chan struct{})}
	s.live.Store(true)
	msgs := ps.Channel(redis.WithChannelSize(256))
	go r.read(s, msgs)
	return s
}

func (r *Redis) read(s *redisSub, msgs <-chan *redis.Message) {
	defer close(s.done)
	for m := range msgs {
		if len(m.Payload) > maxPayload {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(m.Payload), &e); err != nil || e.Kind == "" {
			continue
		}
		r.f.sendIf(s.live.Load, e)
	}
}

// release closes the Redis subscription when the last local subscriber
// has left.
func (r *Redis) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil && r.f.count() == 0 {
		r.stop(r.cur)
		r.cur = nil
	}
}

func (r *Redis) stop(s *redisSub) {
	// Under f's lock, so that no event from s reaches a subscriber after
	// this returns (a newer subscription delivers it instead).
	r.f.mu.Lock()
	s.live.Store(false)
	r.f.mu.Unlock()
	_ = s.ps.Close()
}

// Close ends every local subscription and the Redis subscription, and
// waits for the reader to stop. It does not close the Redis client.
func (r *Redis) Close() error {
	r.mu.Lock()
	r.closed = true
	s := r.cur
	r.cur = nil
	if s != nil {
		r.stop(s)
	}
	r.mu.Unlock()
	r.f.closeAll()
	if s != nil {
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}
