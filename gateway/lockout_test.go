package gateway_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

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
