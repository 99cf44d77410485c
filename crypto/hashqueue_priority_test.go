package crypto

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHashQueuePriorityFirst (issue 12.3): callers with a device cookie of
// their account are served before every ordinary waiter, even those that
// queued earlier and stand better, first come first served among
// themselves.
func TestHashQueuePriorityFirst(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: time.Minute, PerClient: 8, Total: 64})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, l, []HashClient{{Key: "A"}, {Key: "B"}, {Key: "C", Standing: 3, Device: "acct-c"}, {Key: "D", Standing: 9, Device: "acct-d"}})
	if want := "CDAB"; got != want {
		t.Fatalf("grant order %s, want %s", got, want)
	}
	if l.prio.Len() != 0 || len(l.prioByAcct) != 0 {
		t.Fatalf("priority lane leaked: %d waiting, %d accounts", l.prio.Len(), len(l.prioByAcct))
	}
}

// TestHashQueuePriorityBounds: the lane holds at most PriorityPerAccount
// callers of one account and Priority in all; a caller it has no room for
// waits in the ordinary queue (never refused for it), so device cookies,
// stolen or not, cannot take more than their bounds.
func TestHashQueuePriorityBounds(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: time.Minute, PerClient: 8, Total: 64, Priority: 2, PriorityPerAccount: 1})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, l, []HashClient{
		{Key: "T"},              // ordinary, first to queue
		{Key: "P", Device: "x"}, // lane: x's one place
		{Key: "Q", Device: "x"}, // x has its place: ordinary
		{Key: "R", Device: "y"}, // lane: the second and last place
		{Key: "S", Device: "z"}, // lane full: ordinary
	})
	if want := "PRTQS"; got != want {
		t.Fatalf("grant order %s, want %s", got, want)
	}
}

// TestHashQueuePriorityRun: callers who keep the lane full take at most
// PriorityRun slots in a row while ordinary callers wait; then one goes to
// the ordinary queue, so the lane cannot starve it.
func TestHashQueuePriorityRun(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: time.Minute, PerClient: 8, Total: 64, Priority: 4, PriorityPerAccount: 1, PriorityRun: 2})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, l, []HashClient{{Key: "A"}, {Key: "B"},
		{Key: "P", Device: "p"}, {Key: "Q", Device: "q"}, {Key: "R", Device: "r"}, {Key: "S", Device: "s"}})
	if want := "PQARSB"; got != want {
		t.Fatalf("grant order %s, want %s", got, want)
	}
}

// TestHashQueuePriorityLaneCounts: while the lane is full, its callers are
// counted as waiting and a new one goes to the ordinary queue; the
// ordinary Total does not count the lane.
func TestHashQueuePriorityLaneCounts(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: time.Hour, PerClient: 1, Total: 1, Priority: 2, PriorityPerAccount: 1})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	queue := func(c HashClient) {
		before := l.waitingFor()
		wg.Go(func() { _ = l.acquire(WithHashClient(ctx, c)) })
		queueWaiters(l, before+1)
	}
	queue(HashClient{Key: "A"}) // the ordinary queue's one place
	queue(HashClient{Key: "B", Device: "x"})
	queue(HashClient{Key: "C", Device: "y"})
	if l.prio.Len() != 2 || l.waiting != 1 {
		t.Fatalf("lane %d ordinary %d, want 2 and 1", l.prio.Len(), l.waiting)
	}
	// Lane full and ordinary queue full: this one is refused like any
	// ordinary caller past the total.
	var busy *HashBusyError
	if err := l.acquire(WithHashClient(ctx, HashClient{Key: "D", Device: "z"})); !errors.As(err, &busy) {
		t.Fatalf("device caller with the lane and the queue full: %v, want *HashBusyError", err)
	}
	cancel()
	wg.Wait()
	l.release()
	if inUse, waiting := l.counts(); inUse != 0 || waiting != 0 || len(l.prioByAcct) != 0 || len(l.clients) != 0 {
		t.Fatalf("leaked: in use %d waiting %d lane accounts %d clients %d", inUse, waiting, len(l.prioByAcct), len(l.clients))
	}
}

// TestHashQueuePriorityDeadline: a caller in the lane is held to the same
// Wait as any named caller, and leaves nothing behind.
func TestHashQueuePriorityDeadline(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 1, Wait: 20 * time.Millisecond})
	if err := l.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	var busy *HashBusyError
	if err := l.acquire(WithHashClient(context.Background(), HashClient{Key: "A", Device: "x"})); !errors.As(err, &busy) {
		t.Fatalf("device caller past the wait: %v, want *HashBusyError", err)
	}
	if l.prio.Len() != 0 || len(l.prioByAcct) != 0 {
		t.Fatalf("lane leaked: %d waiting, %d accounts", l.prio.Len(), len(l.prioByAcct))
	}
	l.release()
	// An unnamed caller's Device is ignored: the gateway's own work has
	// no place in the lane.
	if err := l.acquire(WithHashClient(context.Background(), HashClient{Device: "x"})); err != nil {
		t.Fatal(err)
	}
	l.release()
}

// TestHashQueuePriorityConcurrent (run with -race): ordinary and device
// callers at once never have more than Slots hashes in flight, every one
// is answered, and the tables end empty.
func TestHashQueuePriorityConcurrent(t *testing.T) {
	l := newHashLimiter(HashQueueConfig{Slots: 2, Wait: 50 * time.Millisecond, PerClient: 2, Total: 16, Priority: 3, PriorityPerAccount: 1})
	var inFlight, peak atomic.Int64
	var granted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Go(func() {
			c := HashClient{Key: fmt.Sprint("addr", i%20), Standing: i % 3}
			if i%4 == 0 {
				c.Device = fmt.Sprint("acct", i%5)
			}
			ctx := WithHashClient(context.Background(), c)
			if i%7 == 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
			}
			if err := l.acquire(ctx); err != nil {
				refused.Add(1)
				return
			}
			granted.Add(1)
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(100 * time.Microsecond)
			inFlight.Add(-1)
			l.release()
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Fatalf("%d hashes in flight at once, want at most 2", p)
	}
	if granted.Load()+refused.Load() != 400 || granted.Load() == 0 {
		t.Fatalf("granted %d refused %d of 400", granted.Load(), refused.Load())
	}
	if inUse, waiting := l.counts(); inUse != 0 || waiting != 0 || len(l.prioByAcct) != 0 || len(l.clients) != 0 || l.turns.Len() != 0 {
		t.Fatalf("leaked: in use %d waiting %d lane accounts %d clients %d turns %d", inUse, waiting, len(l.prioByAcct), len(l.clients), l.turns.Len())
	}
}
