package events

import (
	"context"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// While Redis is hung a Subscribe gives up waiting after SubscribeTimeout
// (it does not hold every other subscriber up), and once Redis answers
// again, after a hang or a restart on the same address, the subscription
// delivers again by itself.
func TestRedisOutageRecovers(t *testing.T) {
	for _, mode := range []string{"hung", "restarted"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t)
			// Client options as the gateway's (bounded, following the context).
			opt := srv.Options()
			opt.ContextTimeoutEnabled = true
			rdb := redis.NewClient(opt)
			defer rdb.Close()
			bus := NewRedis(rdb, "phigate:events")
			bus.SubscribeTimeout = 200 * time.Millisecond
			defer bus.Close()

			var ch <-chan Event
			if mode == "hung" {
				srv.Pause(t)
				done := make(chan struct{})
				go func() {
					defer close(done)
					var cancel func()
					ch, cancel = bus.Subscribe(ctx)
					t.Cleanup(cancel)
				}()
				select {
				case <-done:
				case <-time.After(30 * time.Second): // sanity cap, not a speed claim
					t.Fatal("Subscribe hung with Redis")
				}
				srv.Continue(t)
			} else {
				var cancel func()
				ch, cancel = bus.Subscribe(ctx)
				defer cancel()
				srv.Stop()
				srv.Restart(t)
			}

			// Publish from another node until one arrives: pub/sub is at
			// most once, so events sent before the re-subscription are lost.
			other := NewRedis(srv.Client(t), "phigate:events")
			want := Event{Kind: NewMessage, UserID: "u", MessageID: "m"}
			deadline := time.Now().Add(30 * time.Second)
			for {
				_ = other.Publish(ctx, want)
				select {
				case got, ok := <-ch:
					if !ok {
						t.Fatal("subscription closed by the outage")
					}
					if got != want {
						t.Fatalf("got %+v", got)
					}
					return
				case <-time.After(100 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatal("no event after Redis came back")
				}
			}
		})
	}
}
