package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/redis/go-redis/v9"
)

var ctx = context.Background()

func newClock() *testclock.Clock { return testclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)) }

// node is one gateway node's view of the shared session state.
type node struct {
	store Store
	bus   events.Bus
}

// backend builds n nodes that share one session state: the same Memory
// (one process), or one Redis reached through n separate clients.
type backend struct {
	name  string
	nodes func(t *testing.T, n int, clk *testclock.Clock) []node
}

const testPrefix = "phigate:sess:"

func backends() []backend {
	return []backend{
		{"memory", func(t *testing.T, n int, clk *testclock.Clock) []node {
			mem := NewMemory()
			mem.Now = clk.Now
			bus := events.NewMemory()
			t.Cleanup(func() { bus.Close() })
			ns := make([]node, n)
			for i := range ns {
				ns[i] = node{mem, bus}
			}
			return ns
		}},
		{"redis", func(t *testing.T, n int, clk *testclock.Clock) []node {
			srv := redistest.Start(t)
			ns := make([]node, n)
			for i := range ns {
				c := srv.Client(t)
				bus := events.NewRedis(c, "phigate:events")
				t.Cleanup(func() { bus.Close() })
				ns[i] = node{NewRedis(c, testPrefix), bus}
			}
			return ns
		}},
	}
}

func TestStore(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			runStoreSuite(t, func(t *testing.T, n int) []Store {
				var ss []Store
				for _, nd := range b.nodes(t, n, newClock()) {
					ss = append(ss, nd.store)
				}
				return ss
			})
		})
	}
}

func record(id, user string, at time.Time) Record {
	return Record{ID: id, UserID: user, Role: "patient", WrappedKey: pcrypto.RandomBytes(60),
		SecretHash: pcrypto.RandomBytes(32), Created: at, LastSeen: at, MFA: true, Seal: pcrypto.RandomBytes(32)}
}

func wantEnded(t *testing.T, err error, reason string) {
	t.Helper()
	var e *EndedError
	if !errors.As(err, &e) || e.Reason != reason {
		t.Fatalf("got %v, want *EndedError{%q}", err, reason)
	}
}

func wantNoSession(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrNoSession) {
		t.Fatalf("got %v, want ErrNoSession", err)
	}
}

// runStoreSuite runs the Store contract against newStores, which returns n
// stores sharing one state (n nodes).
func runStoreSuite(t *testing.T, newStores func(t *testing.T, n int) []Store) {
	const idle = 10 * time.Minute
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)

	t.Run("put and get", func(t *testing.T) {
		s := newStores(t, 1)[0]
		r := record("id-1", "u-1", t0)
		r.Role, r.MFA = "staff", true
		r.LastSeen = t0.Add(time.Second)
		if ids, err := s.Put(ctx, r, idle); err != nil || len(ids) != 0 {
			t.Fatalf("put: %v %v", ids, err)
		}
		got, err := s.Get(ctx, "id-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != r.ID || got.UserID != r.UserID || got.Role != "staff" || !got.MFA ||
			!bytes.Equal(got.WrappedKey, r.WrappedKey) || !bytes.Equal(got.SecretHash, r.SecretHash) ||
			!got.Created.Equal(r.Created) || !got.LastSeen.Equal(r.LastSeen) || !bytes.Equal(got.Seal, r.Seal) {
			t.Errorf("got %+v\nwant %+v", got, r)
		}
		// The copy handed out does not alias the stored record.
		got.WrappedKey[0] ^= 0xff
		again, _ := s.Get(ctx, "id-1")
		if !bytes.Equal(again.WrappedKey, r.WrappedKey) {
			t.Error("Get returned the stored slice")
		}
		_, err = s.Get(ctx, "nope")
		wantNoSession(t, err)
		if n, err := s.Count(ctx); err != nil || n != 1 {
			t.Errorf("count %d %v", n, err)
		}
	})

	t.Run("idle must be positive", func(t *testing.T) {
		s := newStores(t, 1)[0]
		for _, d := range []time.Duration{0, -time.Second} {
			if _, err := s.Put(ctx, record("x", "u", t0), d); err == nil {
				t.Errorf("Put with idle %v accepted", d)
			}
		}
		if _, err := s.Put(ctx, record("x", "u", t0), idle); err != nil {
			t.Fatal(err)
		}
		if err := s.Touch(ctx, "x", t0, nil, 0); err == nil {
			t.Error("Touch with idle 0 accepted")
		}
	})

	t.Run("put replaces the user's other session", func(t *testing.T) {
		s := newStores(t, 1)[0]
		s.Put(ctx, record("a1", "alice", t0), idle)
		s.Put(ctx, record("b1", "bob", t0), idle)
		ids, err := s.Put(ctx, record("a2", "alice", t0), idle)
		if err != nil || len(ids) != 1 || ids[0] != "a1" {
			t.Fatalf("replaced %v %v, want [a1]", ids, err)
		}
		_, err = s.Get(ctx, "a1")
		wantEnded(t, err, ReasonReplaced)
		for _, id := range []string{"a2", "b1"} {
			if _, err := s.Get(ctx, id); err != nil {
				t.Errorf("%s: %v", id, err)
			}
		}
		if n, _ := s.Count(ctx); n != 2 {
			t.Errorf("count %d, want 2", n)
		}
		// Touching or ending the replaced session changes nothing.
		wantEnded(t, s.Touch(ctx, "a1", t0, nil, idle), ReasonReplaced)
		wantEnded(t, s.End(ctx, "a1", ReasonUser), ReasonReplaced)
		_, err = s.Get(ctx, "a1")
		wantEnded(t, err, ReasonReplaced)
	})

	t.Run("touch", func(t *testing.T) {
		s := newStores(t, 1)[0]
		s.Put(ctx, record("t1", "u", t0), idle)
		later := t0.Add(7 * time.Minute)
		seal := pcrypto.RandomBytes(32)
		if err := s.Touch(ctx, "t1", later, seal, idle); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.Get(ctx, "t1"); r == nil || !r.LastSeen.Equal(later) || !r.Created.Equal(t0) || !bytes.Equal(r.Seal, seal) {
			t.Errorf("after touch: %+v", r)
		}
		wantNoSession(t, s.Touch(ctx, "unknown", later, nil, idle))
		// Touch never brings a record into being.
		_, err := s.Get(ctx, "unknown")
		wantNoSession(t, err)
	})

	t.Run("end", func(t *testing.T) {
		s := newStores(t, 1)[0]
		s.Put(ctx, record("e1", "u", t0), idle)
		if err := s.End(ctx, "e1", ReasonDisabled); err != nil {
			t.Fatal(err)
		}
		_, err := s.Get(ctx, "e1")
		wantEnded(t, err, ReasonDisabled)
		// Ending again keeps the first reason.
		wantEnded(t, s.End(ctx, "e1", ReasonUser), ReasonDisabled)
		_, err = s.Get(ctx, "e1")
		wantEnded(t, err, ReasonDisabled)
		// Ending an unknown id leaves no tombstone behind.
		wantNoSession(t, s.End(ctx, "ghost", ReasonUser))
		_, err = s.Get(ctx, "ghost")
		wantNoSession(t, err)
		if err := s.End(ctx, "e1", ""); err == nil || Reason(err) != "" {
			t.Errorf("empty reason: %v", err)
		}
		if n, _ := s.Count(ctx); n != 0 {
			t.Errorf("count %d after end", n)
		}
		// The user can sign in again.
		if ids, err := s.Put(ctx, record("e2", "u", t0), idle); err != nil || len(ids) != 0 {
			t.Errorf("new session: %v %v", ids, err)
		}
	})

	t.Run("end user", func(t *testing.T) {
		s := newStores(t, 1)[0]
		s.Put(ctx, record("x1", "xavier", t0), idle)
		s.Put(ctx, record("y1", "yvonne", t0), idle)
		ids, err := s.EndUser(ctx, "xavier", ReasonEverywhere)
		if err != nil || len(ids) != 1 || ids[0] != "x1" {
			t.Fatalf("ended %v %v", ids, err)
		}
		_, err = s.Get(ctx, "x1")
		wantEnded(t, err, ReasonEverywhere)
		if _, err := s.Get(ctx, "y1"); err != nil {
			t.Errorf("other user: %v", err)
		}
		if ids, err := s.EndUser(ctx, "xavier", ReasonDisabled); err != nil || len(ids) != 0 {
			t.Errorf("second EndUser: %v %v", ids, err)
		}
		_, err = s.Get(ctx, "x1")
		wantEnded(t, err, ReasonEverywhere)
		if ids, err := s.EndUser(ctx, "nobody", ReasonDisabled); err != nil || len(ids) != 0 {
			t.Errorf("EndUser of a user without sessions: %v %v", ids, err)
		}
	})

	t.Run("racing puts across nodes leave one live session", func(t *testing.T) {
		stores := newStores(t, 2)
		const n = 20
		var mu sync.Mutex
		var replaced []string
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				ids, err := stores[i%2].Put(ctx, record(fmt.Sprint("r", i), "racer", t0), idle)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				replaced = append(replaced, ids...)
				mu.Unlock()
			}(i)
		}
		close(start)
		wg.Wait()
		live := 0
		for i := 0; i < n; i++ {
			var errs []error
			for _, s := range stores { // every node agrees
				_, err := s.Get(ctx, fmt.Sprint("r", i))
				errs = append(errs, err)
				if err != nil {
					wantEnded(t, err, ReasonReplaced)
				}
			}
			if (errs[0] == nil) != (errs[1] == nil) {
				t.Errorf("nodes disagree on r%d: %v / %v", i, errs[0], errs[1])
			}
			if errs[0] == nil {
				live++
			}
		}
		if live != 1 {
			t.Errorf("%d live sessions, want 1", live)
		}
		sort.Strings(replaced)
		for i := 1; i < len(replaced); i++ {
			if replaced[i] == replaced[i-1] {
				t.Errorf("%s reported replaced twice", replaced[i])
			}
		}
		if len(replaced) != n-1 {
			t.Errorf("%d reported replaced, want %d", len(replaced), n-1)
		}
		for _, s := range stores {
			if c, _ := s.Count(ctx); c != 1 {
				t.Errorf("count %d, want 1", c)
			}
		}
	})

	t.Run("concurrent mixed use", func(t *testing.T) {
		stores := newStores(t, 2)
		var wg sync.WaitGroup
		for i := 0; i < 30; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				s := stores[i%2]
				user := fmt.Sprint("user", i%3)
				id := fmt.Sprint("m", i)
				if _, err := s.Put(ctx, record(id, user, t0), idle); err != nil {
					t.Error(err)
				}
				_ = s.Touch(ctx, id, t0.Add(time.Minute), nil, idle)
				_, _ = s.Get(ctx, id)
				if i%5 == 0 {
					_ = s.End(ctx, id, ReasonUser)
				}
				if i%7 == 0 {
					_, _ = s.EndUser(ctx, user, ReasonDisabled)
				}
			}(i)
		}
		wg.Wait()
		// At most one live session per user.
		per := map[string]int{}
		for i := 0; i < 30; i++ {
			if r, err := stores[0].Get(ctx, fmt.Sprint("m", i)); err == nil {
				per[r.UserID]++
			}
		}
		total := 0
		for u, n := range per {
			total += n
			if n > 1 {
				t.Errorf("%s has %d live sessions", u, n)
			}
		}
		if c, _ := stores[1].Count(ctx); c != total {
			t.Errorf("count %d, live %d", c, total)
		}
	})
}

// TestRedisTTL: every record key really expires: TTL > 0 and <= idle,
// slid by Touch, and a session Redis expired reads as timed out.
func TestRedisTTL(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := NewRedis(rdb, testPrefix)
	now := time.Now()

	const idle = 10 * time.Minute
	if _, err := s.Put(ctx, record("ttl1", "u1", now), idle); err != nil {
		t.Fatal(err)
	}
	pttl := func(k string) time.Duration {
		t.Helper()
		d, err := rdb.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, k := range []string{testPrefix + "s:ttl1", testPrefix + "u:u1"} {
		if d := pttl(k); d <= 0 || d > idle {
			t.Errorf("%s: TTL %v, want in (0, %v]", k, d, idle)
		}
	}
	if d := pttl(testPrefix + "e:ttl1"); d <= idle || d > idle+TombstoneTTL {
		t.Errorf("pre-written tombstone TTL %v", d)
	}
	// Touch with a longer idle window moves the expiry out.
	if err := s.Touch(ctx, "ttl1", now, nil, 20*time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{testPrefix + "s:ttl1", testPrefix + "u:u1"} {
		if d := pttl(k); d <= idle || d > 20*time.Minute {
			t.Errorf("%s after Touch: TTL %v, want in (%v, 20m]", k, d, idle)
		}
	}

	// In real time: the TTL runs down, Touch slides it back up.
	short := time.Second
	s.Put(ctx, record("ttl2", "u2", now), short)
	time.Sleep(500 * time.Millisecond)
	if d := pttl(testPrefix + "s:ttl2"); d <= 0 || d > 600*time.Millisecond {
		t.Errorf("TTL after 500ms: %v", d)
	}
	if err := s.Touch(ctx, "ttl2", time.Now(), nil, short); err != nil {
		t.Fatal(err)
	}
	if d := pttl(testPrefix + "s:ttl2"); d <= 800*time.Millisecond || d > short {
		t.Errorf("TTL after Touch: %v, want about %v", d, short)
	}

	// A session Redis let expire is gone, and remembered as timed out.
	s.Put(ctx, record("ttl3", "u3", now), 200*time.Millisecond)
	time.Sleep(400 * time.Millisecond)
	_, err := s.Get(ctx, "ttl3")
	wantEnded(t, err, ReasonIdle)
	wantEnded(t, s.Touch(ctx, "ttl3", time.Now(), nil, time.Minute), ReasonIdle)
	if n, err := rdb.Exists(ctx, testPrefix+"s:ttl3").Result(); err != nil || n != 0 {
		t.Errorf("expired record still there: %d %v", n, err)
	}
	// A new sign-in does not relabel it "replaced".
	if ids, _ := s.Put(ctx, record("ttl4", "u3", now), time.Minute); len(ids) != 0 {
		t.Errorf("expired session reported replaced: %v", ids)
	}
	_, err = s.Get(ctx, "ttl3")
	wantEnded(t, err, ReasonIdle)

	// Ended sessions' tombstones live an hour.
	s.End(ctx, "ttl4", ReasonUser)
	if d := pttl(testPrefix + "e:ttl4"); d <= TombstoneTTL-time.Minute || d > TombstoneTTL {
		t.Errorf("tombstone TTL %v", d)
	}
	assertAllKeysExpire(t, rdb)
}

// assertAllKeysExpire: no key in Redis lives forever.
func assertAllKeysExpire(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if d, err := rdb.PTTL(ctx, k).Result(); err != nil || d <= 0 {
			t.Errorf("key %q has TTL %v %v", k, d, err)
		}
	}
}

// TestMemorySweep: Sweep ends idle sessions ("idle" tombstones) and
// forgets tombstones after TombstoneTTL, so nothing stays in memory.
func TestMemorySweep(t *testing.T) {
	clk := newClock()
	mem := NewMemory()
	mem.Now = clk.Now
	m := &Manager{Store: mem, Idle: 10 * time.Minute, Absolute: 12 * time.Hour, Now: clk.Now}
	idleTok, _, _ := m.Start(ctx, "user-1", "patient", []byte("k1"), false)
	clk.Add(6 * time.Minute)
	active, _, _ := m.Start(ctx, "user-2", "patient", []byte("k2"), false)
	clk.Add(5 * time.Minute)

	if n := mem.Sweep(clk.Now(), m.Idle); n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	_, _, err := m.Resume(ctx, idleTok)
	wantEnded(t, err, ReasonIdle)
	if _, k, err := m.Resume(ctx, active); err != nil || string(k) != "k2" {
		t.Errorf("active session swept: %q %v", k, err)
	}
	// A tampered token for a swept id still reads as ended, never a key.
	id, _, _ := split(idleTok)
	if _, k, err := m.Resume(ctx, id+"."+b64.EncodeToString(make([]byte, 32))); err == nil || k != nil {
		t.Errorf("tampered swept token: %q %v", k, err)
	}
	// Tombstones are forgotten after an hour: then it is simply "no session".
	clk.Add(2 * time.Hour)
	mem.Sweep(clk.Now(), m.Idle)
	_, _, err = m.Resume(ctx, idleTok)
	wantNoSession(t, err)
	// The other session went idle meanwhile and was swept in that pass.
	_, _, err = m.Resume(ctx, active)
	wantEnded(t, err, ReasonIdle)
	clk.Add(time.Hour)
	mem.Sweep(clk.Now(), m.Idle)
	mem.mu.Lock()
	n := len(mem.ended) + len(mem.byID) + len(mem.byUser)
	mem.mu.Unlock()
	if n != 0 {
		t.Errorf("%d entries left after everything expired", n)
	}
}
