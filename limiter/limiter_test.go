package limiter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/redis/go-redis/v9"
)

var ctx = context.Background()

// env is one backend under test.
type env struct {
	// nodes returns n limiters sharing one set of counters (n nodes).
	nodes func(cfg Config) func() *Limiter
	// advance lets d pass (the fake clock, or real sleep for Redis).
	advance func(d time.Duration)
	// now is the time lock ends are measured against.
	now func() time.Time
	// slack is the tolerance on times (Redis: real clocks).
	slack time.Duration
}

func memoryEnv(t *testing.T) *env {
	clk := testclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	return &env{
		nodes: func(cfg Config) func() *Limiter {
			l := NewMemory(cfg, clk.Now)
			return func() *Limiter { return l } // one process
		},
		advance: clk.Add,
		now:     clk.Now,
	}
}

func redisEnv(t *testing.T) *env {
	srv := redistest.Start(t)
	return &env{
		nodes: func(cfg Config) func() *Limiter {
			return func() *Limiter { return NewRedis(srv.Client(t), "phigate:lim:", cfg) }
		},
		advance: func(d time.Duration) { time.Sleep(d) },
		now:     time.Now,
		slack:   500 * time.Millisecond,
	}
}

func TestLimiter(t *testing.T) {
	t.Run("memory", func(t *testing.T) { runSuite(t, memoryEnv) })
	t.Run("redis", func(t *testing.T) { runSuite(t, redisEnv) })
}

func near(a, b time.Time, slack time.Duration) bool {
	d := a.Sub(b)
	return d <= slack && d >= -slack
}

func wantLocked(t *testing.T, err error) *LockedError {
	t.Helper()
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want *LockedError", err)
	}
	return le
}

func wantThrottled(t *testing.T, err error) *ThrottledError {
	t.Helper()
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("got %v, want *ThrottledError", err)
	}
	return te
}

func fail(t *testing.T, l *Limiter, account, ip string) (bool, time.Time) {
	t.Helper()
	locked, until, err := l.Failure(ctx, account, ip)
	if err != nil {
		t.Fatal(err)
	}
	return locked, until
}

func runSuite(t *testing.T, newEnv func(t *testing.T) *env) {
	acct := func(s string) string { return fmt.Sprintf("%064x", s) } // looks like the callers' keyed hashes

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		want := Config{MaxFailures: 5, Lockout: 15 * time.Minute, IPMaxFailures: 20, IPWindow: 15 * time.Minute}
		if DefaultConfig() != want {
			t.Errorf("DefaultConfig() = %+v", DefaultConfig())
		}
		l := e.nodes(Config{MaxFailures: 3})()
		if got := l.Config(); got.MaxFailures != 3 || got.Lockout != want.Lockout || got.IPMaxFailures != 20 || got.IPWindow != want.IPWindow {
			t.Errorf("zero fields not defaulted: %+v", got)
		}
		// Five failures lock with the defaults, for 15 minutes.
		l = e.nodes(Config{})()
		a := acct("defaults")
		for i := 1; i <= 4; i++ {
			if locked, _ := fail(t, l, a, "192.0.2.1"); locked {
				t.Fatalf("locked after %d failures", i)
			}
		}
		start := e.now()
		locked, until := fail(t, l, a, "192.0.2.1")
		if !locked || !near(until, start.Add(15*time.Minute), e.slack+time.Millisecond) {
			t.Errorf("fifth failure: locked=%v until=%v (now %v)", locked, until, start)
		}
	})

	t.Run("lock-out after consecutive failures", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 3, Lockout: time.Second, IPMaxFailures: 1000, IPWindow: time.Minute})()
		a, other := acct("alice"), acct("bob")
		for i := 1; i <= 2; i++ {
			if locked, until := fail(t, l, a, "192.0.2.1"); locked || !until.IsZero() {
				t.Fatalf("failure %d: locked=%v until=%v", i, locked, until)
			}
			if err := l.Check(ctx, a, "192.0.2.1"); err != nil {
				t.Fatalf("check after %d failures: %v", i, err)
			}
		}
		if n, until, err := l.Status(ctx, a); err != nil || n != 2 || !until.IsZero() {
			t.Errorf("status: %d %v %v", n, until, err)
		}
		start := e.now()
		locked, until := fail(t, l, a, "192.0.2.1")
		if !locked || !near(until, start.Add(time.Second), e.slack+time.Millisecond) {
			t.Fatalf("third failure: locked=%v until=%v (now %v)", locked, until, start)
		}
		le := wantLocked(t, l.Check(ctx, a, "198.51.100.7")) // from any address
		if !le.Until.Equal(until) {
			t.Errorf("Check says until %v, Failure said %v", le.Until, until)
		}
		if !strings.HasPrefix(le.Error(), "account locked until ") {
			t.Errorf("message %q", le.Error())
		}
		// Attempts while locked neither count nor extend the lock.
		for i := 0; i < 5; i++ {
			e.advance(50 * time.Millisecond)
			locked2, until2 := fail(t, l, a, "192.0.2.1")
			if locked2 || !until2.Equal(until) {
				t.Fatalf("failure while locked: locked=%v until=%v, want false %v", locked2, until2, until)
			}
		}
		if n, u, err := l.Status(ctx, a); err != nil || n != 3 || !u.Equal(until) {
			t.Errorf("status while locked: %d %v %v", n, u, err)
		}
		// Another account is untouched.
		if err := l.Check(ctx, other, "192.0.2.1"); err != nil {
			t.Errorf("other account: %v", err)
		}
		// The lock ends on time; the account then has fresh tries.
		e.advance(time.Second)
		if err := l.Check(ctx, a, "192.0.2.1"); err != nil {
			t.Fatalf("after the lock-out: %v", err)
		}
		if n, u, err := l.Status(ctx, a); err != nil || n != 0 || !u.IsZero() {
			t.Errorf("status after the lock-out: %d %v %v", n, u, err)
		}
		for i := 1; i <= 2; i++ {
			if locked, _ := fail(t, l, a, "192.0.2.1"); locked {
				t.Fatalf("relocked after %d fresh failures", i)
			}
		}
		if locked, _ := fail(t, l, a, "192.0.2.1"); !locked {
			t.Error("not locked again after MaxFailures fresh failures")
		}
	})

	t.Run("success resets the count", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 3, Lockout: time.Minute, IPMaxFailures: 1000})()
		a := acct("carol")
		fail(t, l, a, "192.0.2.1")
		fail(t, l, a, "192.0.2.1")
		if err := l.Success(ctx, a); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := l.Status(ctx, a); n != 0 {
			t.Errorf("failures after success: %d", n)
		}
		fail(t, l, a, "192.0.2.1")
		if locked, _ := fail(t, l, a, "192.0.2.1"); locked {
			t.Fatal("locked although a success came between")
		}
		if locked, _ := fail(t, l, a, "192.0.2.1"); !locked {
			t.Fatal("three consecutive failures did not lock")
		}
		// A success does not lift a lock in force.
		if err := l.Success(ctx, a); err != nil {
			t.Fatal(err)
		}
		wantLocked(t, l.Check(ctx, a, ""))
	})

	t.Run("count is forgotten after Lockout without failures", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 3, Lockout: time.Second, IPMaxFailures: 1000})()
		a := acct("dave")
		fail(t, l, a, "192.0.2.1")
		fail(t, l, a, "192.0.2.1")
		e.advance(1100 * time.Millisecond)
		if n, _, _ := l.Status(ctx, a); n != 0 {
			t.Errorf("failures after a quiet Lockout: %d", n)
		}
		fail(t, l, a, "192.0.2.1")
		if locked, _ := fail(t, l, a, "192.0.2.1"); locked {
			t.Error("old failures still counted")
		}
	})

	t.Run("admin unlock", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 2, Lockout: time.Hour, IPMaxFailures: 1000})()
		a := acct("erin")
		fail(t, l, a, "192.0.2.1")
		if locked, _ := fail(t, l, a, "192.0.2.1"); !locked {
			t.Fatal("not locked")
		}
		wantLocked(t, l.Check(ctx, a, "192.0.2.1"))
		if err := l.Unlock(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := l.Check(ctx, a, "192.0.2.1"); err != nil {
			t.Fatalf("after unlock: %v", err)
		}
		if n, u, err := l.Status(ctx, a); err != nil || n != 0 || !u.IsZero() {
			t.Errorf("status after unlock: %d %v %v", n, u, err)
		}
		if locked, _ := fail(t, l, a, "192.0.2.1"); locked {
			t.Error("count survived the unlock")
		}
		// Unlocking an account that is not locked is harmless.
		if err := l.Unlock(ctx, acct("nobody")); err != nil {
			t.Error(err)
		}
	})

	t.Run("per-address throttling", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 1000, Lockout: time.Minute, IPMaxFailures: 3, IPWindow: time.Second})()
		ip := "203.0.113.9"
		// One address trying many accounts.
		for i := 0; i < 3; i++ {
			a := acct(fmt.Sprint("victim", i))
			if err := l.Check(ctx, a, ip); err != nil {
				t.Fatalf("attempt %d refused: %v", i, err)
			}
			fail(t, l, a, ip)
		}
		te := wantThrottled(t, l.Check(ctx, acct("victim-new"), ip))
		if te.RetryAfter <= 0 || te.RetryAfter > time.Second {
			t.Errorf("RetryAfter %v", te.RetryAfter)
		}
		if !strings.Contains(te.Error(), "retry") {
			t.Errorf("message %q", te.Error())
		}
		// Other addresses, and checks without an address, are unaffected.
		if err := l.Check(ctx, acct("victim-new"), "203.0.113.10"); err != nil {
			t.Errorf("other address: %v", err)
		}
		if err := l.Check(ctx, acct("victim-new"), ""); err != nil {
			t.Errorf("no address: %v", err)
		}
		// The window is fixed: failing on does not extend it.
		e.advance(500 * time.Millisecond)
		fail(t, l, acct("victim-x"), ip)
		e.advance(600 * time.Millisecond)
		if err := l.Check(ctx, acct("victim-new"), ip); err != nil {
			t.Errorf("after the window: %v", err)
		}
	})

	t.Run("IPv6 counts per /64", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 1000, IPMaxFailures: 2, IPWindow: time.Minute})()
		fail(t, l, acct("x1"), "2001:db8:1:2::1")
		fail(t, l, acct("x2"), "2001:db8:1:2:ffff::77")
		wantThrottled(t, l.Check(ctx, acct("x3"), "2001:db8:1:2::abcd"))
		wantThrottled(t, l.Check(ctx, acct("x3"), "2001:DB8:1:2:0:0:0:9"))
		if err := l.Check(ctx, acct("x3"), "2001:db8:1:3::1"); err != nil {
			t.Errorf("neighbouring /64: %v", err)
		}
		// An IPv4-mapped IPv6 address is the IPv4 address.
		fail(t, l, acct("y1"), "::ffff:192.0.2.44")
		fail(t, l, acct("y2"), "192.0.2.44")
		wantThrottled(t, l.Check(ctx, acct("y3"), "192.0.2.44"))
	})

	t.Run("locked account reported before a throttled address", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 2, IPMaxFailures: 2, IPWindow: time.Minute})()
		a := acct("frank")
		fail(t, l, a, "192.0.2.5")
		fail(t, l, a, "192.0.2.5")
		wantLocked(t, l.Check(ctx, a, "192.0.2.5"))
		wantThrottled(t, l.Check(ctx, acct("gina"), "192.0.2.5"))
	})

	t.Run("empty account is refused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{})()
		if err := l.Check(ctx, "", "192.0.2.1"); !errors.Is(err, ErrEmptyAccount) {
			t.Errorf("Check: %v", err)
		}
		if _, _, err := l.Failure(ctx, "", "192.0.2.1"); !errors.Is(err, ErrEmptyAccount) {
			t.Errorf("Failure: %v", err)
		}
	})

	t.Run("50 concurrent failures lock exactly once", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		cfg := Config{MaxFailures: 5, Lockout: time.Minute, IPMaxFailures: 1000}
		node := e.nodes(cfg)
		nodes := []*Limiter{node(), node()} // two nodes (the same one in process)
		a := acct("target")
		var lockedNow atomic.Int32
		var untils sync.Map
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				locked, until, err := nodes[i%2].Failure(ctx, a, fmt.Sprintf("192.0.2.%d", i))
				if err != nil {
					t.Error(err)
					return
				}
				if locked {
					lockedNow.Add(1)
				}
				if !until.IsZero() {
					untils.Store(until.UnixMilli(), true)
				}
			}(i)
		}
		close(start)
		wg.Wait()
		if n := lockedNow.Load(); n != 1 {
			t.Fatalf("lockedNow reported %d times, want exactly 1", n)
		}
		n := 0
		untils.Range(func(_, _ any) bool { n++; return true })
		if n != 1 {
			t.Errorf("%d different lock ends reported", n)
		}
		for _, l := range nodes {
			wantLocked(t, l.Check(ctx, a, "192.0.2.200"))
		}
		if f, u, err := nodes[1].Status(ctx, a); err != nil || f != 5 || u.IsZero() {
			t.Errorf("status: %d %v %v", f, u, err)
		}
	})

	t.Run("500 concurrent reservations: at most MaxFailures granted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		cfg := Config{MaxFailures: 5, Lockout: time.Minute, IPMaxFailures: 20, IPWindow: time.Minute}
		node := e.nodes(cfg)
		nodes := []*Limiter{node(), node()}
		a := acct("reserve-target")
		var granted, lockedNow, wrongErr atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 500 {
			wg.Go(func() {
				<-start
				// One account from many addresses; a /24 per 250 attempts
				// keeps the address budget out of the way.
				res, err := nodes[i%2].Reserve(ctx, a, fmt.Sprintf("10.0.%d.%d", i/250, i%250))
				var le *LockedError
				switch {
				case errors.As(err, &le):
				case err != nil:
					wrongErr.Add(1)
					t.Error(err)
				default:
					granted.Add(1) // the others wait while this one is evaluated
					locked, _, err := res.Failed(ctx)
					if err != nil {
						t.Error(err)
					}
					if locked {
						lockedNow.Add(1)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		if g := granted.Load(); g != int32(cfg.MaxFailures) {
			t.Errorf("%d reservations granted, want exactly MaxFailures=%d", g, cfg.MaxFailures)
		}
		if n := lockedNow.Load(); n != 1 {
			t.Errorf("lockedNow reported %d times, want 1", n)
		}
		if n := wrongErr.Load(); n != 0 {
			t.Errorf("%d refusals were not *LockedError", n)
		}
		wantLocked(t, nodes[1].Check(ctx, a, "192.0.2.200"))
	})

	t.Run("500 concurrent reservations from one address: at most IPMaxFailures granted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		cfg := Config{MaxFailures: 5, Lockout: time.Minute, IPMaxFailures: 20, IPWindow: time.Minute}
		node := e.nodes(cfg)
		nodes := []*Limiter{node(), node()}
		var granted atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 500 {
			wg.Go(func() {
				<-start
				_, err := nodes[i%2].Reserve(ctx, acct(fmt.Sprint("spray", i)), "203.0.113.50")
				var te *ThrottledError
				if err == nil {
					granted.Add(1)
				} else if !errors.As(err, &te) {
					t.Errorf("refusal %v, want *ThrottledError", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if g := granted.Load(); g != int32(cfg.IPMaxFailures) {
			t.Errorf("%d reservations granted, want exactly IPMaxFailures=%d", g, cfg.IPMaxFailures)
		}
	})

	t.Run("concurrent right attempts are all admitted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		cfg := Config{MaxFailures: 3, Lockout: time.Minute, IPMaxFailures: 1000, IPWindow: time.Minute}
		l := e.nodes(cfg)()
		a := acct("many-devices")
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 20 {
			wg.Go(func() {
				<-start
				res, err := l.Reserve(ctx, a, "192.0.2.60")
				if err != nil {
					t.Errorf("a right attempt was refused: %v", err)
					return
				}
				if err := res.Succeeded(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
		if err := l.Check(ctx, a, "192.0.2.60"); err != nil {
			t.Errorf("after the right attempts: %v", err)
		}
	})

	t.Run("reservations settled", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		l := e.nodes(Config{MaxFailures: 3, Lockout: time.Minute, IPMaxFailures: 3, IPWindow: time.Minute})()
		a, ip := acct("henry"), "192.0.2.77"
		reserve := func(account string) *Reservation {
			t.Helper()
			r, err := l.Reserve(ctx, account, ip)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		// In progress is not a failure, but it holds its place: with 3
		// in progress a fourth waits, and gives up when its ctx ends.
		r1, r2, r3 := reserve(a), reserve(a), reserve(a)
		if n, _, _ := l.Status(ctx, a); n != 0 {
			t.Errorf("failures while in progress: %d, want 0", n)
		}
		if n := r3.AddressAttempts(); n != 3 {
			t.Errorf("AddressAttempts %d, want 3", n)
		}
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if _, err := l.Reserve(short, acct("another"), ip); err == nil {
			t.Error("fourth attempt from an address with 3 in progress admitted")
		}
		cancel()
		// Released: given back to the account and the address.
		if err := r1.Release(ctx); err != nil {
			t.Fatal(err)
		}
		r1 = reserve(a)
		// Two wrong, then the right one: no lock, count reset, the
		// address gets the right one's attempt back.
		for _, r := range []*Reservation{r1, r2} {
			if locked, _, err := r.Failed(ctx); err != nil || locked {
				t.Fatalf("failure: locked=%v %v", locked, err)
			}
		}
		if n, _, _ := l.Status(ctx, a); n != 2 {
			t.Errorf("failures: %d, want 2", n)
		}
		if err := r3.Succeeded(ctx); err != nil {
			t.Fatal(err)
		}
		if n, u, err := l.Status(ctx, a); err != nil || n != 0 || !u.IsZero() {
			t.Errorf("status after success: %d %v %v", n, u, err)
		}
		// The address has 2 failures of 3: one more is admitted, then it
		// is throttled.
		b := acct("ivy")
		if locked, _, err := reserve(b).Failed(ctx); err != nil || locked {
			t.Fatalf("failure: locked=%v %v", locked, err)
		}
		wantThrottled(t, l.Check(ctx, b, ip))
		// Three wrong in a row lock the account; the third says so.
		c := acct("jack")
		for i := 1; i <= 3; i++ {
			r, err := l.Reserve(ctx, c, "")
			if err != nil {
				t.Fatal(err)
			}
			locked, until, err := r.Failed(ctx)
			if err != nil || locked != (i == 3) || (i == 3) == until.IsZero() {
				t.Fatalf("failure %d: locked=%v until=%v %v", i, locked, until, err)
			}
		}
		if _, err := l.Reserve(ctx, c, ""); err == nil {
			t.Error("reservation on a locked account")
		} else {
			wantLocked(t, err)
		}
		if _, err := l.Reserve(ctx, "", ip); !errors.Is(err, ErrEmptyAccount) {
			t.Errorf("empty account: %v", err)
		}
	})
}

// TestRedisKeys: every key the Redis limiter writes has a TTL no longer than
// its rule, and holds nothing but the opaque account id or the address.
func TestRedisKeys(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	cfg := Config{MaxFailures: 3, Lockout: 10 * time.Minute, IPMaxFailures: 5, IPWindow: 5 * time.Minute}
	l := NewRedis(rdb, "phigate:lim:", cfg)
	a := fmt.Sprintf("%064x", "h")
	for i := 0; i < 4; i++ {
		fail(t, l, a, "192.0.2.1")
	}
	fail(t, l, fmt.Sprintf("%064x", "k"), "2001:db8::1")
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{
		"phigate:lim:af:" + a:                         cfg.Lockout,
		"phigate:lim:al:" + a:                         cfg.Lockout,
		"phigate:lim:ip:192.0.2.1":                    cfg.IPWindow,
		"phigate:lim:ip:2001:db8::/64":                cfg.IPWindow,
		"phigate:lim:af:" + fmt.Sprintf("%064x", "k"): cfg.Lockout,
	}
	if len(keys) != len(want) {
		t.Errorf("keys %q", keys)
	}
	for _, k := range keys {
		max, ok := want[k]
		if !ok {
			t.Errorf("unexpected key %q", k)
			continue
		}
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > max {
			t.Errorf("%s: TTL %v %v, want in (0, %v]", k, ttl, err, max)
		}
	}
	// Without a TTL a key would live forever: make sure a stray one is
	// repaired (and never counted as a lock).
	if err := rdb.Set(ctx, "phigate:lim:ip:198.51.100.1", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	fail(t, l, a+"x", "198.51.100.1")
	if ttl, _ := rdb.PTTL(ctx, "phigate:lim:ip:198.51.100.1").Result(); ttl <= 0 {
		t.Errorf("stray address key left without TTL: %v", ttl)
	}
}

// TestRedisDown: with Redis unreachable every call fails (the caller then
// refuses the sign-in) rather than silently allowing it.
func TestRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	l := NewRedis(rdb, "p:", Config{})
	if err := l.Check(ctx, "a", "192.0.2.1"); err == nil {
		t.Error("Check succeeded without Redis")
	}
	if _, _, err := l.Failure(ctx, "a", "192.0.2.1"); err == nil {
		t.Error("Failure succeeded without Redis")
	}
	if _, err := l.Reserve(ctx, "a", "192.0.2.1"); err == nil {
		t.Error("Reserve succeeded without Redis")
	}
}

// TestMemoryBounded: a flood of random accounts and addresses cannot grow
// the in-process tables past their bound, locks survive the flood, and
// everything is swept once it has expired.
func TestMemoryBounded(t *testing.T) {
	clk := testclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	cfg := Config{MaxFailures: 2, Lockout: time.Hour, IPMaxFailures: 1000, IPWindow: time.Hour}.withDefaults()
	m := newMemory(cfg, clk.Now, 100)
	l := &Limiter{cfg: cfg, b: m}
	victim := "victim"
	fail(t, l, victim, "192.0.2.1")
	fail(t, l, victim, "192.0.2.1")
	for i := 0; i < 10000; i++ {
		fail(t, l, fmt.Sprint("random", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if i%1000 == 0 {
			clk.Add(time.Second)
		}
	}
	m.mu.Lock()
	na, ni := len(m.accounts), len(m.addrs)
	m.mu.Unlock()
	if na > 100 || ni > 100 {
		t.Errorf("tables grew to %d accounts, %d addresses (bound 100)", na, ni)
	}
	wantLocked(t, l.Check(ctx, victim, ""))
	clk.Add(2 * time.Hour)
	_ = l.Check(ctx, "someone", "192.0.2.99")
	m.mu.Lock()
	na, ni = len(m.accounts), len(m.addrs)
	m.mu.Unlock()
	if na+ni != 0 {
		t.Errorf("%d accounts, %d addresses left after everything expired", na, ni)
	}
}

func TestIPKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":           "192.0.2.1",
		"::ffff:192.0.2.1":    "192.0.2.1",
		"2001:db8::1":         "2001:db8::/64",
		"2001:db8:0:0:1::1":   "2001:db8::/64",
		"fe80::1%eth0":        "fe80::/64",
		"":                    "",
		"not-an-ip-just-hash": "not-an-ip-just-hash",
	} {
		if got := ipKey(in); got != want {
			t.Errorf("ipKey(%q) = %q, want %q", in, got, want)
		}
	}
}
