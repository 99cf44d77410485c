package redistest

import (
	"context"
	"testing"
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
