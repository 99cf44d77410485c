package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/smtppeer"
)

// eventually polls cond (a hung dispatcher fails the test instead of
// hanging it; nothing about speed is asserted).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fixture) enqueueN(t *testing.T, n int) []string {
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("ob%03d", i)
		f.enqueue(t, id, Notice{To: patient, Link: "https://x/login"})
		ids = append(ids, id)
	}
	return ids
}

func (f *fixture) sentCount(t *testing.T) int {
	var n int
	if err := f.st.DB().QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var noticeID = regexp.MustCompile(`Message-Id: <([^@>]+)@`)

// hangingSender sends the first ok messages at once; every later send
// hangs until its context ends, as sends in flight do when a process dies.
type hangingSender struct {
	ok      int
	mu      sync.Mutex
	done    []string // notice ids whose send returned nil
	hanging int
}

func (s *hangingSender) Send(ctx context.Context, _ string, _ []string, msg []byte) error {
	s.mu.Lock()
	if len(s.done) < s.ok {
		s.done = append(s.done, string(noticeID.FindSubmatch(msg)[1]))
		s.mu.Unlock()
		return nil
	}
	s.hanging++
	s.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

func (s *hangingSender) snapshot() ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.done...), s.hanging
}

// TestCrashRepeatsOnlyInFlight: each notice is marked sent as soon as its
// send succeeds, so when the process dies with sends in flight, exactly
// the completed sends are marked and a restart sends only the others.
func TestCrashRepeatsOnlyInFlight(t *testing.T) {
	f := newFixture(t)
	const n, k, workers = 40, 13, 3
	f.enqueueN(t, n)
	first := &hangingSender{ok: k}
	d := f.dispatcher(first)
	d.Workers = workers
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { d.Run(ctx); close(ran) }()
	// Every worker is now stuck in a send: the "crash" comes here.
	eventually(t, "all workers in flight", func() bool { _, h := first.snapshot(); return h == workers })
	done, _ := first.snapshot()
	if got := f.sentCount(t); got != k {
		t.Fatalf("%d notices marked sent with %d sends completed and %d in flight", got, k, workers)
	}
	cancel()
	<-ran
	if got := f.sentCount(t); got != k {
		t.Fatalf("after the cut: %d marked sent, want %d (sends cut are not sent)", got, k)
	}

	second := &scriptedSender{}
	sent, err := f.dispatcher(second).RunOnce(context.Background())
	if err != nil || sent != n-k {
		t.Fatalf("restart sent %d (err %v), want %d", sent, err, n-k)
	}
	again := map[string]bool{}
	for _, id := range done {
		again[id] = true
	}
	for _, c := range second.calls {
		if id := string(noticeID.FindSubmatch(c.msg)[1]); again[id] {
			t.Errorf("%s sent again after it had been sent", id)
		}
	}
	if got := f.sentCount(t); got != n {
		t.Errorf("%d of %d marked sent", got, n)
	}
}

// TestWorkersReuseConnections: the notices of a run go out over one
// connection per worker (two SMTP sessions each: before and after
// STARTTLS), not one per notice.
func TestWorkersReuseConnections(t *testing.T) {
	f := newFixture(t)
	peer := smtppeer.Start(t)
	const n, workers = 30, 3
	f.enqueueN(t, n)
	d := f.dispatcher(peer.Smarthost())
	d.Workers = workers
	sent, err := d.RunOnce(context.Background())
	if err != nil || sent != n {
		t.Fatalf("sent %d, err %v", sent, err)
	}
	if got := len(peer.Deliveries()); got != n {
		t.Errorf("peer has %d deliveries, want %d", got, n)
	}
	if s := peer.Sessions(); s > 2*workers {
		t.Errorf("%d SMTP sessions for %d notices over %d workers: connections not reused", s, n, workers)
	}
}

// TestRecoveredSmarthostWithinProbe: notices that failed because the
// smarthost was down are sent as soon as a probe finds it back, without
// waiting for their back-off slot and without being charged an attempt
// per probe. The dispatcher's clock never moves here, so only the probe
// can have made them due.
func TestRecoveredSmarthostWithinProbe(t *testing.T) {
	f := newFixture(t)
	peer := smtppeer.Start(t)
	peer.Down()
	ids := f.enqueueN(t, 3)
	d := f.dispatcher(peer.Smarthost())
	d.Probe = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { d.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	eventually(t, "every notice to fail once", func() bool {
		for _, id := range ids {
			if f.row(t, id).attempts != 1 {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if r := f.row(t, id); r.sent || !r.next.After(f.clock.Now()) {
			t.Fatalf("%s after a failed send: %+v, want back-off", id, r)
		}
	}
	peer.Up()
	eventually(t, "the notices to go out once the smarthost is back", func() bool { return f.sentCount(t) == len(ids) })
	for _, id := range ids {
		if r := f.row(t, id); r.attempts != 1 {
			t.Errorf("%s: %d attempts, want 1 (probes are not attempts)", id, r.attempts)
		}
	}
	if got := len(peer.Deliveries()); got != len(ids) {
		t.Errorf("%d deliveries, want %d", got, len(ids))
	}
}

// TestWakeOnSuccess: with a sender that cannot be probed (the maildrop), a
// successful send shows the next hop is back and releases what waits.
func TestWakeOnSuccess(t *testing.T) {
	f := newFixture(t)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	snd := &scriptedSender{errs: []error{refused, refused}}
	f.enqueueN(t, 2)
	d := f.dispatcher(snd)
	d.Workers = 1
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { d.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	eventually(t, "both to fail", func() bool { return f.row(t, "ob000").attempts == 1 && f.row(t, "ob001").attempts == 1 })
	f.enqueue(t, "late", Notice{To: patient, Link: "https://x/login"})
	d.Kick()
	eventually(t, "all three sent", func() bool { return f.sentCount(t) == 3 })
	if snd.count() != 5 {
		t.Errorf("%d sends, want 5 (2 failed, 3 sent)", snd.count())
	}
}

// gatedSender holds every send until the test opens the gate.
type gatedSender struct {
	started chan struct{}
	gate    chan struct{}
	mu      sync.Mutex
	n       int
}

func (s *gatedSender) Send(context.Context, string, []string, []byte) error {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	s.started <- struct{}{}
	<-s.gate
	return nil
}

// TestStopHandsBackLeases: a node that stops finishes the send under way
// and gives back the notices it had leased but not sent, so another node
// sends them at once instead of after the lease.
func TestStopHandsBackLeases(t *testing.T) {
	f := newFixture(t)
	ids := f.enqueueN(t, 10)
	snd := &gatedSender{started: make(chan struct{}, 10), gate: make(chan struct{})}
	d := f.dispatcher(snd)
	d.Workers, d.Lease = 1, 5*time.Minute
	ran := make(chan struct{})
	go func() { d.Run(context.Background()); close(ran) }()
	<-snd.started
	d.Stop()
	close(snd.gate)
	<-ran
	if snd.n != 1 {
		t.Fatalf("%d sends after Stop, want the one under way", snd.n)
	}
	sent := 0
	for _, id := range ids {
		r := f.row(t, id)
		switch {
		case r.sent:
			sent++
		case !r.next.Equal(f.clock.Now()) || r.attempts != 0:
			t.Errorf("%s not handed back: %+v", id, r)
		}
	}
	if sent != 1 {
		t.Errorf("%d sent, want 1", sent)
	}
	due, err := f.st.DueOutbox(context.Background(), f.clock.Now(), 100)
	if err != nil || len(due) != 9 {
		t.Errorf("%d due after the hand-back (err %v), want 9", len(due), err)
	}
}

// TestCutHandsBackLeases: when the grace period is over and the sends under
// way are cut (Run's context ends), their leases are handed back too: the
// notices are due again at once, not after the lease, and not charged an
// attempt.
func TestCutHandsBackLeases(t *testing.T) {
	f := newFixture(t)
	ids := f.enqueueN(t, 5)
	snd := &hangingSender{}
	d := f.dispatcher(snd)
	d.Workers, d.Lease = 2, 5*time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { d.Run(ctx); close(ran) }()
	eventually(t, "two sends in flight", func() bool { _, h := snd.snapshot(); return h == 2 })
	cancel()
	<-ran
	for _, id := range ids {
		if r := f.row(t, id); r.sent || r.attempts != 0 || !r.next.Equal(f.clock.Now()) {
			t.Errorf("%s not handed back as it was: %+v", id, r)
		}
	}
}
