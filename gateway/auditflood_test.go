package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
)

// flood sends n API sign-ins with wrong passwords from hc, 16 at a time;
// email(i) is the address typed by the i-th.
func flood(hc *http.Client, base string, n int, email func(i int) string) map[int]int {
	var mu sync.Mutex
	statuses := map[int]int{}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			st := signIn(hc, base, email(i), "a wrong guess 123")
			mu.Lock()
			statuses[st]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return statuses
}

// auditCounts counts the trail's auth.login and auth.lockout entries by
// outcome, and returns the refusals (locked, throttled).
func auditCounts(t testing.TB, h *e2e.Harness) (map[string]int, []audit.Entry) {
	t.Helper()
	es, err := h.G.Trail.Search(context.Background(), audit.Query{Action: "auth.*", Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	var refusals []audit.Entry
	for _, e := range es {
		counts[e.Action+"/"+e.Outcome]++
		if e.Outcome == "locked" || e.Outcome == "throttled" {
			refusals = append(refusals, e)
		}
	}
	return counts, refusals
}

// TestSignInFloodAuditBounded (issue 8.3): 600 refused sign-ins from one
// address, at one account and spraying others with long typed addresses,
// grow the audit trail by a fixed number of rows, not one each: the
// evaluated failures (bounded by the limiter), the lock, and for each kind
// of refusal its first entry and one summary with the count of the rest.
// No stored detail is longer than the audit bound.
func TestSignInFloodAuditBounded(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Security.LockoutFailures, cfg.Security.IPMaxFailures = 5, 5
	h := e2e.Start(t, cfg)
	hc := h.Client().HTTP
	hc.Transport.(*http.Transport).MaxConnsPerHost = 16

	// One account: 5 evaluated, then locked; the address has used its 5.
	st := flood(hc, h.BaseURL, 300, func(int) string { return "victim@example.net" })
	// The others are refused as locked, or as throttled while the five
	// were still being evaluated (the address's budget was in use).
	if st[http.StatusUnauthorized] != 5 || st[http.StatusLocked]+st[http.StatusTooManyRequests] != 295 {
		t.Fatalf("one account: statuses %v", st)
	}
	// Spraying accounts: all throttled, with long typed addresses.
	long := strings.Repeat("x", 1500)
	st = flood(hc, h.BaseURL, 300, func(i int) string { return fmt.Sprintf("%s%d@example.net", long, i) })
	if st[http.StatusTooManyRequests] != 300 {
		t.Fatalf("spraying: statuses %v", st)
	}
	h.G.Refusals.Flush(context.Background())

	counts, refusals := auditCounts(t, h)
	for k, n := range map[string]int{"auth.login/failed": 5, "auth.lockout/ok": 1} {
		if counts[k] != n {
			t.Errorf("%s: %d entries, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	// Each kind of refusal: at most its first entry and one summary, and
	// together they account for all 595 refusals.
	accounted := 0
	for _, outcome := range []string{"locked", "throttled"} {
		if n := counts["auth.login/"+outcome]; n > 2 {
			t.Errorf("%d %s entries, want at most 2", n, outcome)
		}
	}
	for _, e := range refusals {
		accounted++
		if r := e.Details["repeats"]; r != "" {
			n, err := strconv.Atoi(r)
			if err != nil {
				t.Fatalf("repeats %q", r)
			}
			accounted += n - 1 // the summary itself is not a refusal
		}
		for k, v := range e.Details {
			if len(v) > audit.MaxFieldBytes {
				t.Errorf("detail %s stored with %d bytes", k, len(v))
			}
		}
	}
	if accounted != 595 {
		t.Errorf("refusal entries account for %d refusals, want 595", accounted)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	if total > 10 {
		t.Errorf("600 refused sign-ins made %d auth entries, want at most 10: %v", total, counts)
	}
}

// dbBytes is the size of the database once its write-ahead log is folded
// in (the log is reused, the main file only grows).
func dbBytes(b *testing.B, h *e2e.Harness) int64 {
	db := h.G.Store.DB()
	var busy, frames, done int
	if err := db.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		b.Fatal(err)
	}
	var pages, size int64
	if err := db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		b.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
		b.Fatal(err)
	}
	return pages * size
}

// BenchmarkSignInFloodDBGrowth (issue 8.3, figures in docs/perf.md): the
// database growth from a flood of failed sign-ins from one address, each
// round 2000 attempts at one account and at 2000 others (typed addresses
// of 1.5 KB), with the production lock-out settings. Reported per round:
// audit-rows and db-bytes added (after the open windows' summaries are
// flushed; the database's pages after a WAL checkpoint), and attempts/s.
func BenchmarkSignInFloodDBGrowth(b *testing.B) {
	h := e2e.Start(b, e2e.Config(b.TempDir()))
	long := strings.Repeat("x", 1500)
	var rows, bytes int64
	var took time.Duration
	b.ResetTimer()
	for n := range b.N {
		// A fresh address each round (the limiter's window is 15 minutes).
		hc := fromAddr(fmt.Sprintf("127.20.%d.%d", n/200, 10+n%200), 16)
		before, _ := auditCounts(b, h)
		size := dbBytes(b, h)
		t0 := time.Now()
		flood(hc, h.BaseURL, 1000, func(int) string { return fmt.Sprintf("victim%d@example.net", n) })
		flood(hc, h.BaseURL, 1000, func(i int) string { return fmt.Sprintf("%s%d-%d@example.net", long, n, i) })
		took += time.Since(t0)
		h.G.Refusals.Flush(context.Background())
		after, _ := auditCounts(b, h)
		for k := range after {
			rows += int64(after[k] - before[k])
		}
		bytes += dbBytes(b, h) - size
	}
	b.ReportMetric(float64(rows)/float64(b.N), "audit-rows/round")
	b.ReportMetric(float64(bytes)/float64(b.N), "db-bytes/round")
	b.ReportMetric(float64(2000*b.N)/took.Seconds(), "attempts/s")
}
