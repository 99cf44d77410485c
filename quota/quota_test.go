package quota

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/redis/go-redis/v9"
)

var ctx = context.Background()

// backends returns, per backend, a constructor of one node's Limits; the
// nodes of one backend share their counts, and all read clk.
func backends(t *testing.T, clk *testclock.Clock) map[string]func(cfg Config) *Limits {
	srv := redistest.Start(t)
	mem := map[Config]*Limits{}
	return map[string]func(Config) *Limits{
		"memory": func(cfg Config) *Limits {
			if mem[cfg] == nil {
				mem[cfg] = NewMemory(cfg, clk.Now) // one process: one table
			}
			return mem[cfg]
		},
		"redis": func(cfg Config) *Limits { return NewRedis(srv.Client(t), "t:quota:", cfg, clk.Now) },
	}
}

func newClock() *testclock.Clock { return testclock.New(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)) }

func send(t *testing.T, l *Limits, account string) {
	t.Helper()
	tk, err := l.Begin(ctx, account)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := tk.End(ctx, true); err != nil {
		t.Fatal(err)
	}
}

func TestMessagesPerHour(t *testing.T) {
	clk := newClock()
	for name, node := range backends(t, clk) {
		t.Run(name, func(t *testing.T) {
			cfg := Config{MessagesPerHour: 3}
			a, b := node(cfg), node(cfg)
			send(t, a, "u1")
			clk.Add(10 * time.Minute)
			send(t, b, "u1")
			send(t, a, "u1")
			_, err := b.Begin(ctx, "u1")
			var re *RateError
			if !errors.As(err, &re) || re.Limit != 3 {
				t.Fatalf("4th message in the hour: %v, want *RateError", err)
			}
			// The first message leaves the window 50 minutes from now.
			if re.RetryAfter != 50*time.Minute {
				t.Errorf("RetryAfter %s, want 50m", re.RetryAfter)
			}
			// Another account has its own budget.
			send(t, a, "u2")
			// A transaction that sent nothing gives its reservation back.
			clk.Add(50 * time.Minute)
			tk, err := a.Begin(ctx, "u1")
			if err != nil {
				t.Fatalf("after the first left the window: %v", err)
			}
			if _, err := b.Begin(ctx, "u1"); !errors.As(err, &re) {
				t.Fatalf("while the reservation is held: %v, want *RateError", err)
			}
			if err := tk.End(ctx, false); err != nil {
				t.Fatal(err)
			}
			send(t, b, "u1")
			if _, err := a.Begin(ctx, "u1"); !errors.As(err, &re) {
				t.Fatalf("budget used again: %v, want *RateError", err)
			}
		})
	}
}

func TestConcurrentTransactions(t *testing.T) {
	clk := newClock()
	for name, node := range backends(t, clk) {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Concurrent: 2, Lease: 10 * time.Minute}
			a, b := node(cfg), node(cfg)
			t1, err := a.Begin(ctx, "u1")
			if err != nil {
				t.Fatal(err)
			}
			dies, err := b.Begin(ctx, "u1")
			if err != nil {
				t.Fatal(err)
			}
			var be *BusyError
			if _, err := a.Begin(ctx, "u1"); !errors.As(err, &be) || be.Limit != 2 {
				t.Fatalf("third transaction: %v, want *BusyError", err)
			}
			// End is idempotent: a second End must not free someone else's slot.
			t1.End(ctx, true)
			t1.End(ctx, false)
			t3, err := b.Begin(ctx, "u1")
			if err != nil {
				t.Fatalf("after End: %v", err)
			}
			if _, err := a.Begin(ctx, "u1"); !errors.As(err, &be) {
				t.Fatalf("after a double End: %v, want *BusyError", err)
			}
			t3.End(ctx, false)
			// A slot whose node died (never ended, no longer renewed)
			// frees after the lease.
			close(dies.stop)
			clk.Add(10 * time.Minute)
			for i := 0; i < 2; i++ {
				if _, err := a.Begin(ctx, "u1"); err != nil {
					t.Fatalf("after the lease: %v", err)
				}
			}
		})
	}
}

// TestBeginRace starts many transactions at once from two nodes: exactly
// the limit get through.
func TestBeginRace(t *testing.T) {
	clk := newClock()
	for name, node := range backends(t, clk) {
		t.Run(name, func(t *testing.T) {
			for _, cfg := range []Config{{Concurrent: 3}, {MessagesPerHour: 3}} {
				nodes := []*Limits{node(cfg), node(cfg)}
				account := "race" + name
				if cfg.Concurrent == 0 {
					account += "-rate"
				}
				var mu sync.Mutex
				ok, refused := 0, 0
				var wg sync.WaitGroup
				for i := 0; i < 40; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := nodes[i%2].Begin(ctx, account)
						mu.Lock()
						defer mu.Unlock()
						var be *BusyError
						var re *RateError
						switch {
						case err == nil:
							ok++
						case errors.As(err, &be) || errors.As(err, &re):
							refused++
						default:
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				if ok != 3 || refused != 37 {
					t.Errorf("%+v: %d began, %d refused; want 3 and 37", cfg, ok, refused)
				}
			}
		})
	}
}

func TestUnlimited(t *testing.T) {
	l := NewMemory(Config{}, nil)
	for i := 0; i < 100; i++ {
		if _, err := l.Begin(ctx, "u"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Begin(ctx, ""); !errors.Is(err, ErrEmptyAccount) {
		t.Errorf("empty account: %v", err)
	}
	var nilTicket *Ticket
	if err := nilTicket.End(ctx, true); err != nil {
		t.Errorf("nil ticket End: %v", err)
	}
}

// TestRedisOutage: with Redis gone, transactions are counted in the
// process (still limited), and a ticket taken before the outage can end.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	opt := srv.Options()
	opt.MaxRetries = -1 // a stopped server answers at once: no retries to wait for
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	l := NewRedis(rdb, "t:quota:", Config{Concurrent: 1, MessagesPerHour: 5}, clk.Now)
	before, err := l.Begin(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	t1, err := l.Begin(ctx, "u1")
	if err != nil {
		t.Fatalf("during the outage: %v", err)
	}
	var be *BusyError
	if _, err := l.Begin(ctx, "u1"); !errors.As(err, &be) {
		t.Fatalf("second transaction during the outage: %v, want *BusyError", err)
	}
	if err := t1.End(ctx, true); err != nil {
		t.Errorf("End of a local ticket: %v", err)
	}
	if err := before.End(ctx, true); err == nil {
		t.Error("End of a Redis ticket with Redis gone: no error")
	}
}

// leaseEnd reads a slot's lease end from the backend that holds it.
func leaseEnd(t *testing.T, tk *Ticket) time.Time {
	t.Helper()
	switch b := tk.b.(type) {
	case *memory:
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.acc[tk.account].slots[tk.id]
	case *redisBackend:
		ms, err := b.rdb.ZScore(ctx, b.keys(tk.account)[0], tk.id).Result()
		if err != nil {
			t.Fatal(err)
		}
		return time.UnixMilli(int64(ms))
	}
	t.Fatalf("backend %T", tk.b)
	return time.Time{}
}

// TestLeaseRenewed: an open transaction renews its slot's lease, so it
// holds the slot longer than one lease; once ended, it renews no more.
func TestLeaseRenewed(t *testing.T) {
	clk := newClock()
	for name, node := range backends(t, clk) {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Concurrent: 1, Lease: 10 * time.Minute}
			a, b := node(cfg), node(cfg)
			a.renewEvery = time.Millisecond
			tk, err := a.Begin(ctx, "renew-"+name)
			if err != nil {
				t.Fatal(err)
			}
			defer tk.End(ctx, false)
			clk.Add(9 * time.Minute)
			want := clk.Now().Add(10 * time.Minute).Truncate(time.Millisecond)
			deadline := time.Now().Add(10 * time.Second)
			for leaseEnd(t, tk).Before(want) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := leaseEnd(t, tk); got.Before(want) {
				t.Fatalf("lease end %s, want it renewed to %s", got, want)
			}
			// 18 minutes after Begin, past the first lease: still held.
			clk.Add(9 * time.Minute)
			var be *BusyError
			if _, err := b.Begin(ctx, "renew-"+name); !errors.As(err, &be) {
				t.Fatalf("after one lease: %v, want *BusyError", err)
			}
		})
	}
}
