package redistest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestPrivateServers(t *testing.T) {
	ctx := context.Background()
	a := Start(t)
	b := Start(t)
	if a.Addr == b.Addr || a.Addr == "127.0.0.1:6379" {
		t.Fatalf("servers at %s and %s", a.Addr, b.Addr)
	}
	ca, ca2, cb := a.Client(t), a.Client(t), b.Client(t)
	if err := ca.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := ca2.Get(ctx, "k").Result(); err != nil || v != "a" {
		t.Errorf("second client of the same server: %q %v", v, err)
	}
	if n, err := cb.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("other server sees the key: %d %v", n, err)
	}
	// No persistence: nothing is written to the test's directory.
	cfg, err := ca.ConfigGet(ctx, "save").Result()
	if err != nil || cfg["save"] != "" {
		t.Errorf("save = %q %v", cfg["save"], err)
	}
}

func TestStoppedAtCleanup(t *testing.T) {
	var s *Server
	t.Run("inner", func(t *testing.T) { s = Start(t) })
	select {
	case <-s.exited:
	default:
		t.Fatal("redis-server still running after its test ended")
	}
}

func TestClient(t *testing.T) {
	c := Client(t)
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Errorf("fresh server holds %d keys (%v)", n, err)
	}
}

// The outage controls do what they say: Stop refuses, Pause answers
// nothing, Continue and Restart (same address, empty) serve again.
func TestOutageControls(t *testing.T) {
	ctx := context.Background()
	s := Start(t)
	opt := s.Options()
	opt.ContextTimeoutEnabled, opt.MaxRetries = true, -1
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Pause(t)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := c.Get(short, "k").Err()
	cancel()
	if err == nil {
		t.Fatal("a paused server answered")
	}
	s.Continue(t)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after Continue: %q %v", v, err)
	}
	addr := s.Addr
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("a stopped server answered")
	}
	s.Restart(t)
	if s.Addr != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr, addr)
	}
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("after Restart: %v, want an empty server", err)
	}
}
