package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/store"
)

// signIn posts one API sign-in with hc and returns the status (0 if the
// request itself failed: goroutines must not call t.Fatal).
func signIn(hc *http.Client, base, email, password string) int {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	resp, err := hc.Post(base+"/api/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// hex32 is the portal's lock-out counter name for an account (its blind
// index, as portal.indexKey makes it).
func hex32(emailIndex []byte) string { return hex.EncodeToString(emailIndex)[:32] }

// TestLockoutHoldsUnderConcurrency (issue 8.1): 500 wrong passwords sent
// to one account at the same instant, through the real portal, get no
// more than lockout_failures (5) evaluated; the rest are refused as
// locked before any hashing, and the right password, sent while the flood
// is still in flight but after the lock, is refused too.
func TestLockoutHoldsUnderConcurrency(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	const victim, right = "lockme@example.net", "saffron harbour quartz 77"
	claimNew(t, h, pass, victim, right)
	maxFailures := h.Cfg.Security.LockoutFailures
	acctLocked := func() bool {
		u, err := h.G.Identity.UserByEmail(context.Background(), victim)
		if err != nil {
			t.Error(err)
			return true
		}
		_, until, err := h.G.Limiter.Status(context.Background(), hex32(u.EmailIndex))
		return err != nil || !until.IsZero()
	}

	hc := h.Client().HTTP
	hc.Transport.(*http.Transport).MaxConnsPerHost = 16 // under the portal's per-address connection cap
	statuses := make(chan int, 600)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 500 {
		wg.Go(func() {
			<-start
			statuses <- signIn(hc, h.BaseURL, victim, "a wrong guess 123")
		})
	}
	var rightStatus int
	wg.Go(func() {
		<-start
		for !acctLocked() {
			// Wait for the flood to lock the account (no time limit: the
			// test's own timeout bounds it).
		}
		rightStatus = signIn(hc, h.BaseURL, victim, right)
	})
	close(start)
	wg.Wait()
	close(statuses)

	counts := map[int]int{}
	for st := range statuses {
		counts[st]++
	}
	if counts[http.StatusUnauthorized] != maxFailures {
		t.Errorf("%d wrong passwords evaluated (401), want exactly lockout_failures=%d; statuses %v", counts[http.StatusUnauthorized], maxFailures, counts)
	}
	if counts[http.StatusLocked] != 500-maxFailures {
		t.Errorf("%d refused as locked (423), want %d; statuses %v", counts[http.StatusLocked], 500-maxFailures, counts)
	}
	if rightStatus != http.StatusLocked {
		t.Errorf("right password once locked: %d, want 423", rightStatus)
	}
	// The audit trail agrees: exactly lockout_failures evaluated failures
	// and one lock.
	u, err := h.G.Identity.UserByEmail(context.Background(), victim)
	if err != nil {
		t.Fatal(err)
	}
	acct := hex32(u.EmailIndex)
	for action, want := range map[string]int{"auth.login/failed": maxFailures, "auth.lockout/ok": 1} {
		a, outcome, _ := strings.Cut(action, "/")
		rows, err := h.G.Store.ListAudit(context.Background(), store.AuditFilter{Action: a, Outcome: outcome, ObjectID: acct, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != want {
			t.Errorf("%s audit rows: %d, want %d", action, len(rows), want)
		}
	}
	if st := signIn(hc, h.BaseURL, victim, right); st != http.StatusLocked {
		t.Errorf("right password after the flood: %d, want 423", st)
	}
}

// TestSecondFactorLockoutUnderConcurrency (issue 8.1): 100 wrong codes
// sent at once for one pending sign-in get exactly lockout_failures
// evaluated; the rest are refused as locked.
func TestSecondFactorLockoutUnderConcurrency(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	addAdmin(t, h, "admin@clinic.example")
	signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	c := h.Client()
	var in struct{ Next string }
	c.JSON("POST", "/api/v1/login", map[string]string{"email": "admin@clinic.example", "password": adminPW}, 200, &in)
	if in.Next != "2fa" {
		t.Fatalf("next=%q, want 2fa", in.Next)
	}
	// The session's cookie, on a transport whose connections stay under the
	// portal's per-address cap (set before its first use).
	hc := &http.Client{Jar: c.HTTP.Jar, Transport: &http.Transport{MaxConnsPerHost: 16,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	statuses := make(chan int, 100)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 100 {
		wg.Go(func() {
			<-start
			body, _ := json.Marshal(map[string]string{"code": fmt.Sprintf("%06d", i)})
			resp, err := hc.Post(h.BaseURL+"/api/v1/login/2fa", "application/json", bytes.NewReader(body))
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for st := range statuses {
		counts[st]++
	}
	if max := h.Cfg.Security.LockoutFailures; counts[http.StatusUnauthorized] != max || counts[http.StatusLocked] != 100-max {
		t.Errorf("statuses %v, want %d evaluated (401) and the rest locked (423)", counts, max)
	}
}

// TestHashQueueFullAnswers429 (issue 8.1): with one hash slot and one
// waiter per address, a burst of sign-ins from one address gets some
// answered 429 with Retry-After and a clear error, page or JSON, never
// 500; an attempt answered 429 was never evaluated, so it is not counted
// against its account.
func TestHashQueueFullAnswers429(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Keys.MaxConcurrentPassword, cfg.Keys.PasswordQueuePerClient, cfg.Keys.PasswordQueueTotal = 1, 1, 2
	cfg.Security.IPMaxFailures = 1000
	h := e2e.Start(t, cfg)
	hc := h.Client().HTTP
	hc.Transport.(*http.Transport).MaxConnsPerHost = 16

	type result struct {
		email, ctype, retry string
		status              int
		body                []byte
	}
	results := make(chan result, 40)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 40 {
		wg.Go(func() {
			<-start
			email := fmt.Sprintf("nobody%d@example.net", i)
			var resp *http.Response
			var err error
			if i%2 == 0 {
				body, _ := json.Marshal(map[string]string{"email": email, "password": "a guess 1234"})
				resp, err = hc.Post(h.BaseURL+"/api/v1/login", "application/json", bytes.NewReader(body))
			} else {
				resp, err = hc.PostForm(h.BaseURL+"/login", url.Values{"email": {email}, "password": {"a guess 1234"}})
			}
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			results <- result{email, resp.Header.Get("Content-Type"), resp.Header.Get("Retry-After"), resp.StatusCode, b}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	busy := 0
	for r := range results {
		acct := hex32(h.G.Identity.Keys.EmailIndex(r.email))
		failures, _, err := h.G.Limiter.Status(context.Background(), acct)
		if err != nil {
			t.Fatal(err)
		}
		switch r.status {
		case http.StatusUnauthorized:
			if failures != 1 {
				t.Errorf("%s evaluated but counted %d times", r.email, failures)
			}
		case http.StatusTooManyRequests:
			busy++
			if failures != 0 {
				t.Errorf("%s answered 429 but counted %d failures", r.email, failures)
			}
			if r.retry == "" {
				t.Errorf("429 without Retry-After")
			}
			if strings.HasPrefix(r.ctype, "application/json") {
				var e struct{ Error, Message string }
				if json.Unmarshal(r.body, &e) != nil || e.Error != "busy" || !strings.Contains(e.Message, "try again") {
					t.Errorf("429 JSON: %s", r.body)
				}
			} else if !strings.Contains(string(r.body), "try again") {
				t.Errorf("429 page without advice: %.200s", r.body)
			}
		default:
			t.Errorf("%s: status %d: %.200s", r.email, r.status, r.body)
		}
	}
	if busy == 0 {
		t.Error("40 simultaneous sign-ins on 1 slot with 1 waiter per address: none answered 429")
	}
}

// fromAddr returns an HTTP client whose connections come from the loopback
// address ip (Linux routes all of 127/8 to lo), so the portal sees another
// client address.
func fromAddr(ip string, conns int) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		DialContext: d.DialContext, MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

// BenchmarkSignInDuringFlood (issue 8.1, figures in docs/perf.md): how long
// a legitimate sign-in takes while 500 sign-in attempts from other
// addresses are in flight, with the production Argon2 parameters and hash
// queue settings. The flood comes from `addrs` loopback addresses
// (500/addrs attempts each, for accounts that do not exist, which take the
// same hash as real ones). Reported: legit-s, the legitimate sign-in's
// latency; flood-429, how many flood attempts were told to come back. Run
// with 4 hash slots (the default) and with 1 (cores / password_threads on
// a two-core machine).
func BenchmarkSignInDuringFlood(b *testing.B) {
	for _, run := range []struct{ addrs, slots int }{{0, 4}, {1, 4}, {50, 4}, {0, 1}, {1, 1}, {50, 1}} {
		addrs := run.addrs
		b.Run(fmt.Sprintf("from-%d-addresses/slots-%d", addrs, run.slots), func(b *testing.B) {
			cfg := e2e.Config(b.TempDir())
			cfg.Keys.MaxConcurrentPassword = run.slots
			def := config.Default().Keys
			cfg.Keys.PasswordTime, cfg.Keys.PasswordMemoryKiB, cfg.Keys.PasswordThreads = def.PasswordTime, def.PasswordMemoryKiB, def.PasswordThreads
			h := e2e.Start(b, cfg)
			h.AddStaff(staff) // signs in with its password first (then a second factor)
			const user, right = staff, "staff portal password 123"
			legit := fromAddr("127.0.0.1", 1)
			var total time.Duration
			var busy, failed atomic.Int64
			b.ResetTimer()
			for n := range b.N {
				var wg sync.WaitGroup
				for a := range addrs { // none: the baseline, one sign-in alone
					// Fresh addresses each round, so the per-address
					// budget does not end the flood early.
					hc := fromAddr(fmt.Sprintf("127.%d.%d.%d", 10+n, a/200, 10+a%200), min(500/addrs, 32)) // under the per-address connection cap
					for i := range 500 / max(addrs, 1) {
						wg.Go(func() {
							switch signIn(hc, h.BaseURL, fmt.Sprintf("flood%d-%d-%d@example.net", n, a, i), "a guess 1234") {
							case http.StatusTooManyRequests:
								busy.Add(1)
							case 0:
								failed.Add(1)
							}
						})
					}
				}
				time.Sleep(200 * time.Millisecond) // let the flood queue up first
				t0 := time.Now()
				if st := signIn(legit, h.BaseURL, user, right); st != http.StatusOK {
					b.Fatalf("legitimate sign-in: %d", st)
				}
				total += time.Since(t0)
				wg.Wait()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "legit-s")
			b.ReportMetric(float64(busy.Load())/float64(b.N), "flood-429")
			if failed.Load() > 0 {
				b.Errorf("%d flood requests got no answer", failed.Load())
			}
		})
	}
}
