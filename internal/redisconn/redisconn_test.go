package redisconn_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/redisconn"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// changes records what OnChange heard.
type changes struct {
	mu  sync.Mutex
	ups []bool
	ch  chan bool
}

func newChanges() *changes { return &changes{ch: make(chan bool, 16)} }

func (c *changes) on(_ context.Context, up bool, _ time.Duration, _ error) {
	c.mu.Lock()
	c.ups = append(c.ups, up)
	c.mu.Unlock()
	c.ch <- up
}

func (c *changes) seen() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]bool(nil), c.ups...)
}

// wait returns the next change, failing after a generous cap (a sanity
// bound, not a speed assertion).
func (c *changes) wait(t *testing.T) bool {
	t.Helper()
	select {
	case up := <-c.ch:
		return up
	case <-time.After(30 * time.Second):
		t.Fatal("no change of state heard")
		return false
	}
}

func start(t *testing.T) (*redistest.Server, *redis.Client, *redisconn.Guard, *changes) {
	t.Helper()
	srv := redistest.Start(t)
	c := newChanges()
	rdb, g := redisconn.New(srv.Options(), redisconn.Options{Timeout: 300 * time.Millisecond, Probe: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), OnChange: c.on})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; rdb.Close() })
	return srv, rdb, g, c
}

// A stopped and a hung Redis both give ErrUnavailable, mark it down once,
// fail fast while down (single commands and transactions alike), and the
// probe brings it back by itself.
func TestOutageAndRecovery(t *testing.T) {
	for _, mode := range []string{"stopped", "hung"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			srv, rdb, g, c := start(t)
			if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if mode == "stopped" {
				srv.Stop()
			} else {
				srv.Pause(t)
				t.Cleanup(func() { srv.Continue(t) })
			}
			if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redisconn.ErrUnavailable) {
				t.Fatalf("Get during the outage: %v, want ErrUnavailable", err)
			}
			if !g.Down() || c.wait(t) {
				t.Fatal("not marked down")
			}
			for range 3 {
				if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redisconn.ErrUnavailable) {
					t.Fatalf("Get while down: %v", err)
				}
				_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Get(ctx, "k")
					return nil
				})
				if !errors.Is(err, redisconn.ErrUnavailable) {
					t.Fatalf("transaction while down: %v", err)
				}
			}
			if mode == "stopped" {
				srv.Restart(t)
			} else {
				srv.Continue(t)
			}
			if !c.wait(t) {
				t.Fatal("second change is not the recovery")
			}
			want := "v"
			if mode == "stopped" {
				want = "" // restarted empty
			}
			if v, err := rdb.Get(ctx, "k").Result(); v != want || (err != nil && !errors.Is(err, redis.Nil)) {
				t.Fatalf("Get after recovery: %q %v", v, err)
			}
			if got := c.seen(); len(got) != 2 {
				t.Fatalf("changes %v, want exactly one down and one up", got)
			}
		})
	}
}

// Redis answering with an error, or the caller giving up, is no outage.
func TestNotAnOutage(t *testing.T) {
	ctx := context.Background()
	_, rdb, g, c := start(t)
	if err := rdb.HSet(ctx, "h", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, "h").Err(); err == nil || errors.Is(err, redisconn.ErrUnavailable) {
		t.Fatalf("WRONGTYPE: %v", err)
	}
	if err := rdb.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("missing key: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := rdb.Get(cctx, "h").Err(); err == nil || errors.Is(err, redisconn.ErrUnavailable) {
		t.Fatalf("cancelled by the caller: %v", err)
	}
	if g.Down() || len(c.seen()) != 0 {
		t.Fatalf("marked down (%v)", c.seen())
	}
}
