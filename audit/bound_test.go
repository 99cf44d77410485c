package audit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/phigate/phigate/internal/testclock"
)

// TestClientFieldsBounded (issue 8.3): whatever a caller passes, what the
// trail stores of any field or detail is at most MaxFieldBytes, cut on a
// rune boundary, marked, with the bytes dropped noted; short fields are
// stored whole.
func TestClientFieldsBounded(t *testing.T) {
	e := newEnv(t, nil)
	typed := strings.Repeat("é", 5000) + "@example.net" // 10 KB, as a client might type
	details := map[string]string{"email": typed, "ehlo": "mail.example", strings.Repeat("k", 500): "v"}
	for i := range 100 {
		details[fmt.Sprintf("x%03d", i)] = "y"
	}
	record(t, e.tr, Entry{Actor: "smtp:" + strings.Repeat("a", 4000), IP: "192.0.2.7", Action: "smtp.auth",
		ObjectType: "user", ObjectID: strings.Repeat("b", 3000), Outcome: Failed, Details: details})
	got, err := e.tr.Search(context.Background(), Query{Action: "smtp.auth"})
	if err != nil || len(got) != 1 {
		t.Fatalf("Search: %v %d", err, len(got))
	}
	g := got[0]
	for name, v := range map[string]string{"actor": g.Actor, "object_id": g.ObjectID} {
		if len(v) > MaxFieldBytes || !strings.HasSuffix(v, truncMark) {
			t.Errorf("%s stored with %d bytes, want at most %d and marked", name, len(v), MaxFieldBytes)
		}
	}
	if len(g.Details) > MaxDetails+1 {
		t.Errorf("%d details stored, want at most %d", len(g.Details), MaxDetails+1)
	}
	for k, v := range g.Details {
		if len(k) > MaxDetailKeyBytes || len(v) > MaxFieldBytes || !utf8.ValidString(v) {
			t.Errorf("detail %.20q=%.20q: %d/%d bytes", k, v, len(k), len(v))
		}
	}
	if email := g.Details["email"]; !strings.HasPrefix(typed, strings.TrimSuffix(email, truncMark)) || !strings.HasSuffix(email, truncMark) {
		t.Errorf("email stored as %q", email)
	}
	if g.Details["ehlo"] != "mail.example" {
		t.Errorf("short detail changed: %q", g.Details["ehlo"])
	}
	tr := g.Details[TruncatedKey]
	for _, want := range []string{"actor:", "object_id:", "email:", "details:"} {
		if !strings.Contains(tr, want) {
			t.Errorf("truncation note %q lacks %q", tr, want)
		}
	}
	if _, err := e.tr.Verify(context.Background()); err != nil {
		t.Errorf("Verify: %v", err)
	}
	// The caller's map is untouched.
	if details["email"] != typed {
		t.Error("the caller's details were changed")
	}
}

// collect is a Recorder that keeps what it is given.
type collect struct {
	mu sync.Mutex
	es []Entry
}

func (c *collect) Record(_ context.Context, e Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.es = append(c.es, e)
	return nil
}

func (c *collect) entries() []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Entry(nil), c.es...)
}

// TestCoalescerBoundsRepeats (issue 8.3): 1000 refusals of one key in one
// window make two entries (the first, and one summary with the count);
// the next window starts again; distinct keys are recorded each; and past
// MaxKeys a flood of new keys still makes a bounded number of entries.
func TestCoalescerBoundsRepeats(t *testing.T) {
	clk := testclock.New(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	rec := &collect{}
	c := NewCoalescer(rec, CoalescerOptions{Window: time.Minute, MaxKeys: 10, Now: clk.Now, NoTimer: true})
	ctx := context.Background()
	refusal := Entry{Actor: "anonymous", IP: "192.0.2.9", Action: "auth.login", ObjectType: "account", ObjectID: "acct1",
		Outcome: "locked", Details: map[string]string{"email": "x@example.net"}}
	for range 1000 {
		if err := c.Record(ctx, "auth.login/locked/192.0.2.9/acct1", refusal); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(rec.entries()); n != 1 {
		t.Fatalf("%d entries during the window, want 1", n)
	}
	clk.Add(time.Minute)
	if err := c.Record(ctx, "auth.login/locked/192.0.2.9/acct1", refusal); err != nil {
		t.Fatal(err)
	}
	es := rec.entries()
	if len(es) != 3 {
		t.Fatalf("%d entries after the window, want 3 (first, summary, next first)", len(es))
	}
	sum := es[1]
	if sum.Details["repeats"] != "999" || sum.Action != "auth.login" || sum.Outcome != "locked" || sum.ObjectID != "acct1" ||
		sum.Details["window_start"] != "2026-12-06T09:00:00Z" || sum.Details["window_end"] != "2026-12-06T09:01:00Z" || sum.Details["email"] != "" {
		t.Errorf("summary %+v", sum)
	}
	// A window without repeats needs no summary.
	c.Flush(ctx)
	if n := len(rec.entries()); n != 3 {
		t.Errorf("%d entries after flushing a window without repeats, want 3", n)
	}

	// A flood of distinct keys: 10 counted keys, then one overflow key.
	rec2 := &collect{}
	c2 := NewCoalescer(rec2, CoalescerOptions{Window: time.Minute, MaxKeys: 10, Now: clk.Now, NoTimer: true})
	for i := range 5000 {
		if err := c2.Record(ctx, fmt.Sprintf("k%d", i), refusal); err != nil {
			t.Fatal(err)
		}
	}
	c2.Flush(ctx)
	if n := len(rec2.entries()); n != 12 {
		t.Errorf("5000 distinct keys made %d entries, want 12 (10 keys, the overflow key and its summary)", n)
	}
}

// TestCoalescerTimer: without Flush, the summary is written when the
// window ends.
func TestCoalescerTimer(t *testing.T) {
	rec := &collect{}
	c := NewCoalescer(rec, CoalescerOptions{Window: 20 * time.Millisecond})
	e := Entry{Actor: "anonymous", Action: "auth.login", Outcome: "throttled"}
	for range 3 {
		if err := c.Record(context.Background(), "k", e); err != nil {
			t.Fatal(err)
		}
	}
	for len(rec.entries()) < 2 {
		time.Sleep(5 * time.Millisecond) // waits for the timer; no time limit but the test's
	}
	if es := rec.entries(); len(es) != 2 || es[1].Details["repeats"] != "2" {
		t.Errorf("entries %+v", es)
	}
}
