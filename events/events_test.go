package events

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/redistest"
)

// nodes returns n buses that reach each other (n nodes of one deployment),
// and a close function for each.
type backend struct {
	name  string
	nodes func(t *testing.T, n int) []Bus
}

func backends() []backend {
	return []backend{
		{"memory", func(t *testing.T, n int) []Bus {
			m := NewMemory()
			t.Cleanup(func() { m.Close() })
			bs := make([]Bus, n)
			for i := range bs {
				bs[i] = m // one process: every "node" is the same bus
			}
			return bs
		}},
		{"redis", func(t *testing.T, n int) []Bus {
			srv := redistest.Start(t)
			bs := make([]Bus, n)
			for i := range bs {
				b := NewRedis(srv.Client(t), "phigate:events")
				t.Cleanup(func() { b.Close() })
				bs[i] = b
			}
			return bs
		}},
	}
}

func TestBus(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { runBusSuite(t, b.nodes) })
	}
}

func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return Event{}
}

func none(t *testing.T, ch <-chan Event, wait time.Duration) {
	t.Helper()
	select {
	case e, ok := <-ch:
		if ok {
			t.Errorf("unexpected event %+v", e)
		}
	case <-time.After(wait):
	}
}

func closed(t *testing.T, ch <-chan Event) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed")
		}
	}
}

func runBusSuite(t *testing.T, nodes func(t *testing.T, n int) []Bus) {
	ctx := context.Background()

	t.Run("a user's subscription hears only events naming that user, on every node", func(t *testing.T) {
		bs := nodes(t, 2)
		rcpt, c1 := bs[1].SubscribeUser(ctx, "rcpt")
		defer c1()
		sender, c2 := bs[1].SubscribeUser(ctx, "sender")
		defer c2()
		other, c3 := bs[0].SubscribeUser(ctx, "other")
		defer c3()
		all, c4 := bs[1].Subscribe(ctx)
		defer c4()
		held := MessageChanged(MessageHeld, "m1", "", "sender")
		arrived := MessageChanged(NewMessage, "m1", "rcpt", "sender")
		ended := Event{Kind: SessionEnded, UserID: "rcpt", SessionID: "s1", Reason: "idle"}
		for _, e := range []Event{held, arrived, ended} {
			if err := bs[0].Publish(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []Event{arrived, ended} {
			if got := recv(t, rcpt); got != want {
				t.Errorf("recipient got %+v, want %+v", got, want)
			}
		}
		for _, want := range []Event{held, arrived} {
			if got := recv(t, sender); got != want {
				t.Errorf("sender got %+v, want %+v", got, want)
			}
		}
		for _, want := range []Event{held, arrived, ended} {
			if got := recv(t, all); got != want {
				t.Errorf("all-events subscriber got %+v, want %+v", got, want)
			}
		}
		none(t, other, 200*time.Millisecond)
		none(t, rcpt, 0)
		none(t, sender, 0)
	})

	t.Run("publish on one node, every subscriber on every node gets it", func(t *testing.T) {
		bs := nodes(t, 2)
		a1, c1 := bs[0].Subscribe(ctx)
		defer c1()
		a2, c2 := bs[0].Subscribe(ctx)
		defer c2()
		b1, c3 := bs[1].Subscribe(ctx)
		defer c3()
		// Published right after Subscribe returned: must be delivered.
		want := Event{Kind: SessionEnded, UserID: "u1", SessionID: "s1", Reason: "replaced"}
		if err := bs[1].Publish(ctx, want); err != nil {
			t.Fatal(err)
		}
		for i, ch := range []<-chan Event{a1, a2, b1} {
			if got := recv(t, ch); got != want {
				t.Errorf("subscriber %d got %+v", i, got)
			}
		}
		want2 := Event{Kind: NewMessage, UserID: "u2", MessageID: "m9"}
		if err := bs[0].Publish(ctx, want2); err != nil {
			t.Fatal(err)
		}
		for i, ch := range []<-chan Event{a1, a2, b1} {
			if got := recv(t, ch); got != want2 {
				t.Errorf("subscriber %d got %+v", i, got)
			}
		}
	})

	t.Run("order is kept per publisher", func(t *testing.T) {
		bs := nodes(t, 2)
		ch, cancel := bs[1].Subscribe(ctx)
		defer cancel()
		for i := 0; i < 20; i++ {
			if err := bs[0].Publish(ctx, Event{Kind: NewMessage, MessageID: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 20; i++ {
			if got := recv(t, ch); got.MessageID != fmt.Sprint(i) {
				t.Fatalf("event %d: %+v", i, got)
			}
		}
	})

	t.Run("no events from before Subscribe", func(t *testing.T) {
		bs := nodes(t, 2)
		if err := bs[0].Publish(ctx, Event{Kind: NewMessage, MessageID: "early"}); err != nil {
			t.Fatal(err)
		}
		ch, cancel := bs[1].Subscribe(ctx)
		defer cancel()
		none(t, ch, 200*time.Millisecond)
	})

	t.Run("cancel closes the channel and stops delivery", func(t *testing.T) {
		bs := nodes(t, 2)
		ch, cancel := bs[1].Subscribe(ctx)
		other, cancelOther := bs[1].Subscribe(ctx)
		defer cancelOther()
		cancel()
		cancel() // twice is harmless
		closed(t, ch)
		if err := bs[0].Publish(ctx, Event{Kind: NewMessage, MessageID: "after"}); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, other); got.MessageID != "after" {
			t.Errorf("remaining subscriber got %+v", got)
		}
	})

	t.Run("context end closes the channel", func(t *testing.T) {
		bs := nodes(t, 1)
		cctx, stop := context.WithCancel(ctx)
		ch, cancel := bs[0].Subscribe(cctx)
		defer cancel()
		stop()
		closed(t, ch)
		// Already-ended context: a closed channel at once.
		ch2, cancel2 := bs[0].Subscribe(cctx)
		defer cancel2()
		closed(t, ch2)
	})

	t.Run("a slow subscriber never blocks publishers or others", func(t *testing.T) {
		bs := nodes(t, 2)
		slow, c1 := bs[1].Subscribe(ctx) // never read until the end
		defer c1()
		fast, c2 := bs[1].Subscribe(ctx)
		defer c2()
		n := SubscriberBuffer * 3
		got := make(chan int)
		go func() {
			k := 0
			for e := range fast {
				k++
				if e.MessageID == "last" {
					break
				}
			}
			got <- k
		}()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < n; i++ {
				_ = bs[0].Publish(ctx, Event{Kind: NewMessage, MessageID: fmt.Sprint(i)})
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("publisher blocked by a slow subscriber")
		}
		// The fast subscriber keeps receiving (events dropped for it while
		// it was behind are fine: best effort).
		var k int
		ok := false
		for try := 0; try < 100 && !ok; try++ {
			_ = bs[0].Publish(ctx, Event{Kind: NewMessage, MessageID: "last"})
			select {
			case k = <-got:
				ok = true
			case <-time.After(100 * time.Millisecond):
			}
		}
		if !ok || k == 0 {
			t.Fatalf("fast subscriber starved (%d events)", k)
		}
		// The slow one kept at most its buffer, the oldest events.
		if n := len(slow); n > SubscriberBuffer || n == 0 {
			t.Errorf("slow subscriber holds %d events", n)
		}
		if e := <-slow; e.MessageID != "0" {
			t.Errorf("slow subscriber's first event %+v", e)
		}
	})

	t.Run("concurrent subscribe, publish, cancel", func(t *testing.T) {
		bs := nodes(t, 2)
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ch, cancel := bs[i%2].Subscribe(ctx)
				_ = bs[(i+1)%2].Publish(ctx, Event{Kind: NewMessage, MessageID: fmt.Sprint(i)})
				if i%3 == 0 {
					cancel()
					closed(t, ch)
					return
				}
				defer cancel()
				// Our own event was published after we subscribed.
				deadline := time.After(5 * time.Second)
				for {
					select {
					case e := <-ch:
						if e.MessageID == fmt.Sprint(i) {
							return
						}
					case <-deadline:
						t.Errorf("subscriber %d never saw its event", i)
						return
					}
				}
			}(i)
		}
		wg.Wait()
	})
}

// TestGoroutinesFreed: cancelling every subscriber (or Close) leaves no
// goroutine behind.
func TestGoroutinesFreed(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			bs := b.nodes(t, 2)
			// Warm up the client's pool so its own goroutines are counted.
			_ = bs[0].Publish(ctx, Event{Kind: NewMessage})
			_ = bs[1].Publish(ctx, Event{Kind: NewMessage})
			base := settle(t, -1)

			for round := 0; round < 3; round++ {
				var cancels []func()
				for i := 0; i < 10; i++ {
					ch, cancel := bs[i%2].Subscribe(ctx)
					cancels = append(cancels, cancel)
					_ = ch
				}
				cctx, stop := context.WithCancel(ctx)
				for i := 0; i < 5; i++ {
					bs[i%2].Subscribe(cctx)
				}
				_ = bs[0].Publish(ctx, Event{Kind: NewMessage, MessageID: "x"})
				for _, c := range cancels {
					c()
				}
				stop()
			}
			if n := settle(t, base); n > base {
				t.Errorf("%d goroutines after every subscriber left, %d before\n%s", n, base, stacks())
			}

			// Close with subscribers still attached frees them too.
			for i := 0; i < 4; i++ {
				bs[i%2].Subscribe(ctx)
			}
			for _, bus := range bs {
				if c, ok := bus.(interface{ Close() error }); ok {
					c.Close()
				}
			}
			if n := settle(t, base); n > base {
				t.Errorf("%d goroutines after Close, %d before\n%s", n, base, stacks())
			}
			// A closed bus hands out closed channels.
			ch, cancel := bs[0].Subscribe(ctx)
			defer cancel()
			closed(t, ch)
		})
	}
}

// settle waits until the goroutine count is at most want (or stable, when
// want < 0) and returns it.
func settle(t *testing.T, want int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	prev := -1
	for {
		runtime.GC()
		n := runtime.NumGoroutine()
		if (want >= 0 && n <= want) || (want < 0 && n == prev) || time.Now().After(deadline) {
			return n
		}
		prev = n
		time.Sleep(50 * time.Millisecond)
	}
}

func stacks() string {
	b := make([]byte, 1<<20)
	return string(b[:runtime.Stack(b, true)])
}

func TestRedisIgnoresJunk(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	bus := NewRedis(srv.Client(t), "phigate:events")
	defer bus.Close()
	ch, cancel := bus.Subscribe(ctx)
	defer cancel()
	raw := srv.Client(t)
	for _, junk := range []string{"", "not json", `{"kind":""}`, `[1,2]`, `{"kind":"x","user_id":` + strings.Repeat(`"a`, 5000) + `}`,
		`{"kind":"` + strings.Repeat("k", maxPayload) + `"}`} {
		if err := raw.Publish(ctx, "phigate:events", junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	want := Event{Kind: NewMessage, UserID: "u", MessageID: "m"}
	if err := bus.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestWireFormat(t *testing.T) {
	b, err := json.Marshal(Event{Kind: SessionEnded, SessionID: "s", Reason: "idle"})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"kind":"session-ended","session_id":"s","reason":"idle"}` {
		t.Errorf("wire format %s", b)
	}
}
