package alert

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
)

var ctx = context.Background()

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// recorder is a Sender that keeps what it was given.
type recorder struct {
	mu  sync.Mutex
	got []Alert
	err error
}

func (r *recorder) SendAlert(_ context.Context, a Alert) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.got = append(r.got, a)
	return nil
}

func (r *recorder) sent() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Alert(nil), r.got...)
}

func (r *recorder) kinds() map[string]int {
	m := map[string]int{}
	for _, a := range r.sent() {
		m[a.Kind]++
	}
	return m
}

type fixture struct {
	a   *Alerter
	clk *testclock.Clock
	rec *recorder
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	clk := testclock.New(t0)
	rec := &recorder{}
	return &fixture{a: New(cfg, rec, clk.Now), clk: clk, rec: rec}
}

// flushed delivers the queue (what Run does on each wake-up) and returns
// what the Sender has received so far.
func (f *fixture) flushed() []Alert {
	f.a.flush(ctx)
	return f.rec.sent()
}

func (f *fixture) observe(e Event) {
	if e.Time.IsZero() {
		e.Time = f.clk.Now()
	}
	f.a.Observe(ctx, e)
}

func failLogin(ip string) Event {
	return Event{Actor: "", IP: ip, Action: ActionLogin, ObjectType: "user", Outcome: OutcomeFailed}
}

func open(actor string, i int) Event {
	action := ActionMessageRead
	if i%2 == 1 {
		action = ActionAttachment
	}
	return Event{Actor: actor, IP: "198.51.100.4", Action: action, ObjectType: "message", ObjectID: fmt.Sprintf("%032x", i), Outcome: OutcomeOK}
}

func wide() Config {
	return Config{IPFailures: 5, OpensPerUser: 8, Window: 15 * time.Minute, MaxPerWindow: 1000}
}

func TestDefaults(t *testing.T) {
	a := New(Config{}, nil, nil)
	if a.cfg != DefaultConfig() {
		t.Fatalf("cfg = %+v, want %+v", a.cfg, DefaultConfig())
	}
	d := DefaultConfig()
	if d.IPFailures != 20 || d.OpensPerUser != 100 || d.Window != 15*time.Minute || d.MaxPerWindow != 10 {
		t.Fatalf("defaults = %+v", d)
	}
	// A nil Sender is allowed: alerts are only listed.
	a.Observe(ctx, Event{Action: ActionLockout, ObjectID: "u1"})
	a.flush(ctx)
	if len(a.Recent(0)) != 1 {
		t.Fatal("alert not listed")
	}
}

func TestIPFailuresFireAtThresholdOncePerWindow(t *testing.T) {
	f := newFixture(t, wide())
	for range 4 {
		f.observe(failLogin("192.0.2.7"))
		f.clk.Add(time.Minute)
	}
	// Other addresses, and sign-ins that did not fail, do not count.
	f.observe(failLogin("192.0.2.8"))
	f.observe(Event{IP: "192.0.2.7", Action: ActionLogin, Outcome: OutcomeOK})
	f.observe(Event{IP: "192.0.2.7", Action: "auth.other", Outcome: OutcomeFailed})
	if got := f.flushed(); len(got) != 0 {
		t.Fatalf("alert before threshold: %+v", got)
	}
	f.observe(failLogin("192.0.2.7")) // 5th, at 9:04
	got := f.flushed()
	if len(got) != 1 || got[0].Kind != KindIPFailures {
		t.Fatalf("at threshold: %+v", got)
	}
	want := "5 failed sign-ins from 192.0.2.7 within 15 minutes (from 2026-03-01T09:00:00Z to 2026-03-01T09:04:00Z)."
	if got[0].Text != want {
		t.Fatalf("text = %q\nwant   %q", got[0].Text, want)
	}
	// Further failures in the same window do not fire again.
	for range 50 {
		f.observe(failLogin("192.0.2.7"))
	}
	if got := f.flushed(); len(got) != 1 {
		t.Fatalf("fired again in the same window: %d alerts", len(got))
	}
	// The window (from 9:00) ends at 9:15; a new one can fire again.
	f.clk.Add(11 * time.Minute) // 9:15
	for range 4 {
		f.observe(failLogin("192.0.2.7"))
	}
	if got := f.flushed(); len(got) != 1 {
		t.Fatalf("fired early in the new window: %d alerts", len(got))
	}
	f.observe(failLogin("192.0.2.7"))
	if got := f.flushed(); len(got) != 2 || got[1].Kind != KindIPFailures {
		t.Fatalf("new window did not fire: %+v", got)
	}
}

func TestIPFailuresSpreadOverWindowsDoNotFire(t *testing.T) {
	f := newFixture(t, wide())
	for range 20 {
		f.observe(failLogin("192.0.2.9"))
		f.clk.Add(4 * time.Minute) // 4 per 15-minute window at most
	}
	if got := f.flushed(); len(got) != 0 {
		t.Fatalf("slow failures fired: %+v", got)
	}
}

func TestIPv6CountsPer64(t *testing.T) {
	f := newFixture(t, wide())
	for i := range 5 {
		f.observe(failLogin(fmt.Sprintf("[2001:db8:1:2::%x]:4%d", i+1, i))) // with ports
	}
	got := f.flushed()
	if len(got) != 1 || !strings.Contains(got[0].Text, " from 2001:db8:1:2::/64 ") {
		t.Fatalf("/64 not counted as one: %+v", got)
	}
}

func TestOpenVolumeFiresAtThresholdOncePerWindow(t *testing.T) {
	f := newFixture(t, wide())
	alice, bob := "3f2a9c1b3f2a9c1b3f2a9c1b3f2a9c1b", "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
	for i := range 7 {
		f.observe(open(alice, i))
		f.observe(open(bob, i))
		f.observe(open("", i)) // no actor: not counted
	}
	if got := f.flushed(); len(got) != 0 {
		t.Fatalf("alert before threshold: %+v", got)
	}
	f.clk.Add(time.Minute)
	f.observe(open(alice, 7)) // 8th: reads and downloads add up
	got := f.flushed()
	if len(got) != 1 || got[0].Kind != KindOpenVolume {
		t.Fatalf("at threshold: %+v", got)
	}
	want := "User " + alice + " opened or downloaded messages 8 times within 15 minutes (from 2026-03-01T09:00:00Z to 2026-03-01T09:01:00Z); the latest came from 198.51.100.4."
	if got[0].Text != want {
		t.Fatalf("text = %q\nwant   %q", got[0].Text, want)
	}
	for i := range 100 {
		f.observe(open(alice, i))
	}
	if got := f.flushed(); len(got) != 1 {
		t.Fatalf("fired again in the window: %d", len(got))
	}
	f.clk.Add(15 * time.Minute)
	for i := range 8 {
		f.observe(open(alice, i))
	}
	if got := f.flushed(); len(got) != 2 {
		t.Fatalf("later window did not fire: %d", len(got))
	}
}

func TestImmediateRulesFirePerEvent(t *testing.T) {
	f := newFixture(t, wide())
	actor, target, msg := "aaaa1111aaaa1111aaaa1111aaaa1111", "bbbb2222bbbb2222bbbb2222bbbb2222", "cccc3333cccc3333cccc3333cccc3333"
	fire := []Event{
		{Action: ActionLockout, ObjectType: "user", ObjectID: target, IP: "192.0.2.1", Outcome: OutcomeFailed},
		{Action: ActionLockout, ObjectType: "user", ObjectID: target, IP: "192.0.2.1", Outcome: OutcomeFailed},
		{Action: ActionBreakGlass, Actor: actor, IP: "192.0.2.2", ObjectType: "message", ObjectID: msg, Outcome: OutcomeOK},
		{Action: ActionBreakGlass, Actor: actor, IP: "192.0.2.2", ObjectType: "message", ObjectID: msg, Outcome: OutcomeOK},
		{Action: ActionAdminGrant, Actor: actor, IP: "192.0.2.3", ObjectType: "user", ObjectID: target, Outcome: OutcomeOK},
		{Action: ActionAdminGrant, Actor: actor, IP: "192.0.2.3", ObjectType: "user", ObjectID: target},
		{Action: ActionAuditVerify, Actor: actor, IP: "192.0.2.4", ObjectType: "audit", ObjectID: "1234", Outcome: OutcomeFailed},
		{Action: ActionAuditVerify, Outcome: OutcomeFailed},
		{Action: ActionRedis, Actor: "system", ObjectType: "redis", Outcome: OutcomeFailed},
	}
	quiet := []Event{
		{Action: "user.role", Actor: actor, ObjectType: "user", ObjectID: target, Outcome: OutcomeOK},
		{Action: ActionAdminGrant, Actor: actor, ObjectType: "user", ObjectID: target, Outcome: OutcomeFailed},
		{Action: ActionAuditVerify, Actor: actor, Outcome: OutcomeOK},
		{Action: ActionRedis, Actor: "system", ObjectType: "redis", Outcome: OutcomeOK}, // Redis is back
		{Action: "message.send", Actor: actor, Outcome: OutcomeOK},
	}
	for _, e := range quiet {
		f.observe(e)
	}
	if got := f.flushed(); len(got) != 0 {
		t.Fatalf("quiet events alerted: %+v", got)
	}
	for i, e := range fire {
		f.observe(e)
		if got := f.flushed(); len(got) != i+1 {
			t.Fatalf("event %d (%s) did not fire at once: %d alerts", i, e.Action, len(got))
		}
	}
	got := f.rec.sent()
	at := "2026-03-01T09:00:00Z"
	want := []struct{ kind, text string }{
		{KindLockout, "Account " + target + " was locked out after repeated failed sign-ins at " + at + "; the last attempt came from 192.0.2.1."},
		{KindLockout, ""},
		{KindBreakGlass, "Break-glass access to message " + msg + " by user " + actor + " from 192.0.2.2 at " + at + "."},
		{KindBreakGlass, ""},
		{KindAdminGrant, "User " + target + " was given the admin role by user " + actor + " from 192.0.2.3 at " + at + "."},
		{KindAdminGrant, ""},
		{KindAuditVerify, "Audit trail verification failed at " + at + " (first failing record 1234); the check was run by user " + actor + " from 192.0.2.4."},
		{KindAuditVerify, "Audit trail verification failed at " + at + "."},
		{KindRedisOutage, "Redis stopped answering at " + at + "; portal sign-in and sessions answer 503 until it returns, and SMTP intake continues."},
	}
	for i, w := range want {
		if got[i].Kind != w.kind || (w.text != "" && got[i].Text != w.text) {
			t.Errorf("alert %d = %s %q\nwant      %s %q", i, got[i].Kind, got[i].Text, w.kind, w.text)
		}
		if got[i].ID == "" || !got[i].Time.Equal(t0) {
			t.Errorf("alert %d: id %q time %v", i, got[i].ID, got[i].Time)
		}
	}
}

func TestLockoutStormSendsMaxThenSummary(t *testing.T) {
	f := newFixture(t, Config{}) // defaults: 10 per 15 minutes
	for i := range 500 {
		f.observe(Event{Action: ActionLockout, ObjectID: fmt.Sprintf("acct%04d", i), IP: "192.0.2.1"})
		if i%50 == 0 {
			f.clk.Add(time.Minute) // the storm lasts 10 minutes: one window
		}
	}
	got := f.flushed()
	if len(got) != 10 {
		t.Fatalf("sent %d alerts during the storm, want 10", len(got))
	}
	for i, a := range got {
		if a.Kind != KindLockout || !strings.Contains(a.Text, fmt.Sprintf("acct%04d", i)) {
			t.Fatalf("alert %d = %+v", i, a)
		}
	}
	// No summary until the window ends.
	f.clk.Add(4*time.Minute + 59*time.Second)
	if got := f.flushed(); len(got) != 10 {
		t.Fatalf("summary before the window ended: %d", len(got))
	}
	f.clk.Add(time.Second)
	got = f.flushed()
	if len(got) != 11 {
		t.Fatalf("after the window: %d alerts, want 11", len(got))
	}
	s := got[10]
	want := "490 more alerts in the last 15 minutes: 490 lockout (from 2026-03-01T09:00:00Z to 2026-03-01T09:15:00Z). The full list is in the admin pages."
	if s.Kind != KindSummary || s.Text != want || !s.Time.Equal(t0.Add(15*time.Minute)) {
		t.Fatalf("summary = %+v\nwant text %q", s, want)
	}
	st := f.a.Stats()
	if st.Raised != 501 || st.Sent != 11 || st.Summarised != 490 || st.SendErrors != 0 || st.Dropped != 0 {
		t.Fatalf("stats = %+v", st)
	}
	// Only one summary, and the next window sends individually again.
	f.clk.Add(time.Hour)
	if got := f.flushed(); len(got) != 11 {
		t.Fatalf("second summary: %d", len(got))
	}
	f.observe(Event{Action: ActionLockout, ObjectID: "acct9999"})
	if got := f.flushed(); len(got) != 12 || got[11].Kind != KindLockout {
		t.Fatalf("new window: %+v", got[len(got)-1])
	}
}

func TestSummaryCountsByKind(t *testing.T) {
	f := newFixture(t, Config{IPFailures: 1, MaxPerWindow: 10})
	for i := range 10 {
		f.observe(Event{Action: ActionBreakGlass, ObjectID: fmt.Sprint(i)})
	}
	for i := range 30 {
		f.observe(failLogin(fmt.Sprintf("203.0.113.%d", i)))
	}
	for range 7 {
		f.observe(Event{Action: ActionLockout, ObjectID: "u1"})
	}
	f.clk.Add(15 * time.Minute)
	got := f.flushed()
	if len(got) != 11 {
		t.Fatalf("%d alerts, want 10 + summary", len(got))
	}
	want := "37 more alerts in the last 15 minutes: 30 ip-failures, 7 lockout (from"
	if got[10].Kind != KindSummary || !strings.HasPrefix(got[10].Text, want) {
		t.Fatalf("summary %q, want prefix %q", got[10].Text, want)
	}
}

func TestNoSummaryWhenNothingHeldBack(t *testing.T) {
	f := newFixture(t, Config{MaxPerWindow: 3})
	for range 3 {
		f.observe(Event{Action: ActionLockout, ObjectID: "u1"})
	}
	f.clk.Add(time.Hour)
	if got := f.flushed(); len(got) != 3 || f.rec.kinds()[KindSummary] != 0 {
		t.Fatalf("got %+v", got)
	}
}

func TestRecentBoundedNewestFirst(t *testing.T) {
	f := newFixture(t, Config{MaxPerWindow: 5})
	if got := f.a.Recent(10); len(got) != 0 {
		t.Fatalf("empty Recent = %+v", got)
	}
	for i := range 3 {
		f.observe(Event{Action: ActionLockout, ObjectID: fmt.Sprintf("acct%04d", i)})
	}
	if got := f.a.Recent(10); len(got) != 3 || !strings.Contains(got[0].Text, "acct0002") || !strings.Contains(got[2].Text, "acct0000") {
		t.Fatalf("Recent(10) = %+v", got)
	}
	for i := 3; i < 700; i++ {
		f.observe(Event{Action: ActionLockout, ObjectID: fmt.Sprintf("acct%04d", i)})
	}
	all := f.a.Recent(0)
	if len(all) != RecentMax {
		t.Fatalf("Recent(0) has %d, want %d", len(all), RecentMax)
	}
	for i, a := range all {
		if want := fmt.Sprintf("acct%04d", 699-i); !strings.Contains(a.Text, want) {
			t.Fatalf("Recent[%d] = %q, want %s", i, a.Text, want)
		}
	}
	if got := f.a.Recent(2); len(got) != 2 || got[0] != all[0] || got[1] != all[1] {
		t.Fatalf("Recent(2) = %+v", got)
	}
	if got := f.a.Recent(10_000); len(got) != RecentMax {
		t.Fatalf("Recent(10000) = %d", len(got))
	}
	// The summary is listed too, newest.
	f.clk.Add(15 * time.Minute)
	f.a.flush(ctx)
	if got := f.a.Recent(1); got[0].Kind != KindSummary || !strings.HasPrefix(got[0].Text, "695 more alerts") {
		t.Fatalf("Recent(1) = %+v", got)
	}
	// Recent returns a copy.
	got := f.a.Recent(1)
	got[0].Text = "changed"
	if f.a.Recent(1)[0].Text == "changed" {
		t.Fatal("Recent shares memory")
	}
}

func TestCountersExpireAndAreBounded(t *testing.T) {
	f := newFixture(t, wide())
	for i := range 300 {
		f.observe(failLogin(fmt.Sprintf("10.0.%d.%d", i/256, i%256)))
		f.observe(open(fmt.Sprintf("user%d", i), i))
	}
	if f.a.ipFails.len() != 300 || f.a.opens.len() != 300 {
		t.Fatalf("tracked %d IPs, %d actors", f.a.ipFails.len(), f.a.opens.len())
	}
	f.clk.Add(15 * time.Minute)
	f.observe(failLogin("10.9.9.9"))
	f.observe(open("someone", 0))
	if f.a.ipFails.len() != 1 || f.a.opens.len() != 1 {
		t.Fatalf("after the window: %d IPs, %d actors tracked", f.a.ipFails.len(), f.a.opens.len())
	}
	// An expired counter starts again from one.
	for range 4 {
		f.observe(failLogin("10.9.9.9"))
	}
	if got := f.flushed(); len(got) != 1 {
		t.Fatalf("%d alerts", len(got))
	}

	// The cap evicts the oldest windows.
	g := newFixture(t, wide())
	g.a.ipFails.max = 100
	for i := range 150 {
		g.observe(failLogin(fmt.Sprintf("10.1.%d.%d", i/256, i%256)))
		g.clk.Add(time.Second)
	}
	if n := g.a.ipFails.len(); n != 100 {
		t.Fatalf("tracked %d, cap 100", n)
	}
	if st := g.a.Stats(); st.EvictedKeys != 50 {
		t.Fatalf("evicted %d, want 50", st.EvictedKeys)
	}
	if _, ok := g.a.ipFails.m["10.1.0.0"]; ok {
		t.Fatal("oldest key kept")
	}
	if _, ok := g.a.ipFails.m["10.1.0.149"]; !ok {
		t.Fatal("newest key evicted")
	}
}

func TestRunDeliversAndFlushesSummaryAtWindowEnd(t *testing.T) {
	f := newFixture(t, Config{MaxPerWindow: 2})
	f.a.tick = time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.a.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	for range 5 {
		f.observe(Event{Action: ActionLockout, ObjectID: "u1"})
	}
	waitFor(t, func() bool { return len(f.rec.sent()) == 2 })
	f.clk.Add(15 * time.Minute) // no event: Run's tick notices the window end
	waitFor(t, func() bool { return len(f.rec.sent()) == 3 })
	if s := f.rec.sent()[2]; s.Kind != KindSummary || !strings.HasPrefix(s.Text, "3 more alerts in the last 15 minutes: 3 lockout") {
		t.Fatalf("summary = %+v", s)
	}
}

func TestRunSummarisesUnfinishedWindowOnStop(t *testing.T) {
	f := newFixture(t, Config{MaxPerWindow: 1})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.a.Run(rctx); close(done) }()
	f.observe(Event{Action: ActionLockout, ObjectID: "u1"})
	f.observe(Event{Action: ActionBreakGlass, ObjectID: "m1"})
	waitFor(t, func() bool { return len(f.rec.sent()) == 1 })
	f.clk.Add(7 * time.Minute)
	cancel()
	<-done
	got := f.rec.sent()
	if len(got) != 2 || got[1].Text != "1 more alert in the last 7 minutes: 1 break-glass (from 2026-03-01T09:00:00Z to 2026-03-01T09:07:00Z). The full list is in the admin pages." {
		t.Fatalf("got %+v", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSenderErrorsAreCounted(t *testing.T) {
	f := newFixture(t, Config{})
	f.rec.err = errors.New("outbox down")
	f.observe(Event{Action: ActionLockout, ObjectID: "u1"})
	f.a.flush(ctx)
	if st := f.a.Stats(); st.SendErrors != 1 || st.Sent != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if len(f.a.Recent(0)) != 1 {
		t.Fatal("failed alert not listed")
	}
}

func TestFullQueueFoldsIntoSummary(t *testing.T) {
	f := newFixture(t, Config{MaxPerWindow: 100})
	f.a.maxQueue = 5 // as if Run were stuck
	for range 8 {
		f.observe(Event{Action: ActionLockout, ObjectID: "u1"})
	}
	f.clk.Add(15 * time.Minute)
	got := f.flushed()
	if len(got) != 6 || !strings.HasPrefix(got[5].Text, "3 more alerts") {
		t.Fatalf("got %d: %+v", len(got), got)
	}
}

func TestConcurrentObserve(t *testing.T) {
	f := newFixture(t, Config{IPFailures: 20, OpensPerUser: 100, MaxPerWindow: 10})
	f.a.tick = time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.a.Run(rctx); close(done) }()

	var wg sync.WaitGroup
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				f.a.Observe(ctx, failLogin("192.0.2.50"))           // 2000 in all: one crossing
				f.a.Observe(ctx, open(fmt.Sprintf("user%d", g), i)) // 100 each: 20 crossings
				if i%10 == 0 {
					f.a.Observe(ctx, Event{Action: ActionLockout, ObjectID: fmt.Sprintf("acct%d-%d", g, i)}) // 200
					_ = f.a.Recent(5)
					_ = f.a.Stats()
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	<-done

	st := f.a.Stats()
	// 1 ip-failures + 20 open-volume + 200 lockouts, and the stop summary.
	if st.Raised != 222 || st.Summarised != 211 || st.Sent != 11 {
		t.Fatalf("stats = %+v", st)
	}
	kinds := map[string]int{}
	for _, a := range f.a.Recent(0) {
		kinds[a.Kind]++
	}
	if kinds[KindIPFailures] != 1 || kinds[KindOpenVolume] != 20 || kinds[KindLockout] != 200 || kinds[KindSummary] != 1 {
		t.Fatalf("kinds = %v", kinds)
	}
	if got := f.rec.sent(); got[len(got)-1].Kind != KindSummary || !strings.HasPrefix(got[len(got)-1].Text, "211 more alerts") {
		t.Fatalf("last sent = %+v", got[len(got)-1])
	}
}
