package crypto

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// queueWaiters blocks until l has n callers waiting.
func queueWaiters(l *hashLimiter, n int) {
	for {
		if _, w := l.counts(); w == n {
			return
		}
		runtime.Gosched()
	}
}

// TestHashQueueFairPerClient: with one slot held and client A's four
// callers queued before client B's one, B is served second, not fifth.
func TestHashQueueFairPerClient(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: time.Minute, PerClient: 8, Total: 64})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, l, []HashClient{{Key: "A"}, {Key: "A"}, {Key: "A"}, {Key: "A"}, {Key: "B"}})
	if want := "ABAAA"; got != want {
		t.Fatalf("grant order %s, want %s", got, want)
	}
}

// TestHashQueueGoodStandingFirst: a client with fewer recent attempts is
// served before clients that queued earlier with more.
func TestHashQueueGoodStandingFirst(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: time.Minute, PerClient: 8, Total: 64})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, l, []HashClient{{Key: "A", Standing: 9}, {Key: "A", Standing: 10}, {Key: "B", Standing: 7}, {Key: "C", Standing: 1}})
	if want := "CBAA"; got != want {
		t.Fatalf("grant order %s, want %s", got, want)
	}
}

// grantOrder queues callers for clients in the given order while the one
// slot of l is held, then frees the slot once per caller and returns the
// keys in the order they were granted. It leaves l empty.
func grantOrder(t *testing.T, l *hashLimiter, callers []HashClient) string {
	t.Helper()
	order := make(chan string, len(callers))
	var wg sync.WaitGroup
	for _, c := range callers {
		before := l.waitingFor()
		wg.Go(func() {
			if err := l.acquire(WithHashClient(context.Background(), c)); err != nil {
				t.Error(err)
				return
			}
			order <- c.Key
		})
		queueWaiters(l, before+1) // queue in a known order
	}
	got := ""
	for range callers {
		l.release()
		got += <-order
	}
	wg.Wait()
	l.release()
	if inUse, waiting := l.counts(); inUse != 0 || waiting != 0 || len(l.clients) != 0 || l.turns.Len() != 0 {
		t.Fatalf("leaked: in use %d waiting %d clients %d turns %d", inUse, waiting, len(l.clients), l.turns.Len())
	}
	return got
}

// TestHashQueueBounds: a client may queue PerClient callers and everyone
// together Total; the next is refused at once with *HashBusyError, and a
// caller that gets no slot within Wait is refused the same way; a caller
// without a client is not.
func TestHashQueueBounds(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: time.Hour, PerClient: 2, Total: 3})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	queue := func(client string) {
		before := l.waitingFor()
		wg.Go(func() { _ = l.acquire(WithHashClient(ctx, HashClient{Key: client})) })
		queueWaiters(l, before+1)
	}
	queue("A")
	queue("A")
	var busy *HashBusyError
	if err := l.acquire(WithHashClient(ctx, HashClient{Key: "A"})); !errors.As(err, &busy) || busy.RetryAfter < time.Second {
		t.Fatalf("third caller of one client: %v, want *HashBusyError", err)
	}
	queue("B")
	if err := l.acquire(WithHashClient(ctx, HashClient{Key: "C"})); !errors.As(err, &busy) {
		t.Fatalf("caller past the total: %v, want *HashBusyError", err)
	}
	cancel()
	wg.Wait()
	if _, waiting := l.counts(); waiting != 0 {
		t.Fatalf("%d still waiting after cancel", waiting)
	}

	// The deadline: the one slot stays held, so the wait runs out.
	l.configure(HashQueueConfig{Slots: 1, Wait: 20 * time.Millisecond, PerClient: 2, Total: 3})
	if err := l.acquire(WithHashClient(context.Background(), HashClient{Key: "D"})); !errors.As(err, &busy) {
		t.Fatalf("caller past the wait: %v, want *HashBusyError", err)
	}
	// The gateway's own callers (no client) wait past the deadline and
	// past the totals: nobody outside can multiply them.
	got := make(chan error, 1)
	go func() { got <- l.acquire(context.Background()) }()
	queueWaiters(l, 1)
	time.Sleep(60 * time.Millisecond) // three times the wait
	if _, waiting := l.counts(); waiting != 1 {
		t.Fatalf("unnamed caller left the queue: %d waiting", waiting)
	}
	l.release()
	if err := <-got; err != nil {
		t.Fatalf("unnamed caller: %v", err)
	}
	l.release()
	if inUse, waiting := l.counts(); inUse != 0 || waiting != 0 || len(l.clients) != 0 {
		t.Fatalf("leaked: in use %d waiting %d clients %d", inUse, waiting, len(l.clients))
	}
}

func (l *hashLimiter) waitingFor() int { _, w := l.counts(); return w }
