package gateway_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
)

const deviceCookie = "__Secure-phigate-device"

// deviceCookiesSet returns the device cookies a response set, by path.
func deviceCookiesSet(hdr http.Header) map[string]*http.Cookie {
	out := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == deviceCookie {
			out[c.Path] = c
		}
	}
	return out
}

// rawPost posts body (JSON, or a form if it is url.Values) to path with
// the cookies given and no jar, without following redirects.
func rawPost(t *testing.T, hc *http.Client, base, path string, body any, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	var req *http.Request
	var err error
	if form, ok := body.(url.Values); ok {
		req, err = http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", base)
		}
	} else {
		b, _ := json.Marshal(body)
		req, err = http.NewRequest("POST", base+path, bytes.NewReader(b))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func noRedirects() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
}

// deviceLogs counts the sign-ins whose device cookie verified for the
// account signed into (portal.checkPassword's debug line).
func deviceLogs(h *e2e.Harness) int {
	return strings.Count(string(h.Logs.Bytes()), "sign-in with a device cookie")
}

// TestDeviceCookie (issue 12.3): a device cookie is set after a fully
// successful sign-in, page or API (not after a failure, not before the
// second factor is done), with its flags on both sign-in paths; it counts
// only for its own account; a tampered one is ignored (the sign-in goes
// on as usual); a wrong password sent with it clears it.
func TestDeviceCookie(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	const alice, bob, alicePW, bobPW = "dc.alice@example.net", "dc.bob@example.net", "violet canyon ember 31", "orchid tundra signal 58"
	claimNew(t, h, pass, alice, alicePW)
	claimNew(t, h, pass, bob, bobPW)
	hc := noRedirects()

	// A wrong password: no device cookie.
	resp := rawPost(t, hc, h.BaseURL, "/api/v1/login", map[string]string{"email": alice, "password": "a wrong guess 123"})
	if resp.StatusCode != 401 || len(deviceCookiesSet(resp.Header)) != 0 {
		t.Fatalf("wrong password: %d, device cookies %v", resp.StatusCode, deviceCookiesSet(resp.Header))
	}
	// The right one (no second factor for a patient here): set, on both
	// sign-in paths, with its flags.
	resp = rawPost(t, hc, h.BaseURL, "/api/v1/login", map[string]string{"email": alice, "password": alicePW})
	set := deviceCookiesSet(resp.Header)
	if resp.StatusCode != 200 || len(set) != 2 || set["/login"] == nil || set["/api/v1/login"] == nil {
		t.Fatalf("sign-in: %d, device cookies %v, want one on /login and one on /api/v1/login", resp.StatusCode, set)
	}
	for p, c := range set {
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 180*24*3600 || c.Domain != "" {
			t.Errorf("device cookie on %s: %+v, want Secure HttpOnly SameSite=Strict Max-Age=180 days, no Domain", p, c)
		}
		if strings.Contains(c.Value, "alice") || strings.Contains(c.Value, "example") {
			t.Errorf("device cookie carries the address: %s", c.Value)
		}
	}
	aliceCookie := set["/api/v1/login"]
	if set["/login"].Value != aliceCookie.Value {
		t.Error("the two paths got different values")
	}
	// The page face sets it too.
	resp = rawPost(t, hc, h.BaseURL, "/login", url.Values{"email": {bob}, "password": {bobPW}})
	if set := deviceCookiesSet(resp.Header); resp.StatusCode != http.StatusSeeOther || len(set) != 2 {
		t.Fatalf("page sign-in: %d, device cookies %v", resp.StatusCode, set)
	}

	// Only for its account: alice's cookie on alice's sign-in counts
	// (logged), on bob's it is ignored, and bob still gets in.
	n := deviceLogs(h)
	if resp := rawPost(t, hc, h.BaseURL, "/api/v1/login", map[string]string{"email": alice, "password": alicePW}, aliceCookie); resp.StatusCode != 200 {
		t.Fatalf("alice with her cookie: %d", resp.StatusCode)
	}
	if got := deviceLogs(h); got != n+1 {
		t.Fatalf("alice's own cookie: %d device sign-ins logged, want 1", got-n)
	}
	n = deviceLogs(h)
	if resp := rawPost(t, hc, h.BaseURL, "/api/v1/login", map[string]string{"email": bob, "password": bobPW}, aliceCookie); resp.StatusCode != 200 {
		t.Fatalf("bob with alice's cookie: %d", resp.StatusCode)
	}
	// Tampered (one bit of the tag flipped) or garbage: ignored, never an
	// error page. (Changing the last base64 character may change only its
	// unused bits, the same bytes: decoded and flipped instead.)
	tampered := *aliceCookie
	raw, err := base64.RawURLEncoding.DecodeString(tampered.Value)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-5] ^= 0x01
	tampered.Value = base64.RawURLEncoding.EncodeToString(raw)
	for _, c := range []*http.Cookie{&tampered, {Name: deviceCookie, Value: "not-a-device-cookie"}} {
		if resp := rawPost(t, hc, h.BaseURL, "/api/v1/login", map[string]string{"email": alice, "password": alicePW}, c); resp.StatusCode != 200 {
			t.Fatalf("alice with cookie %q: %d", c.Value, resp.StatusCode)
		}
		if resp := rawPost(t, hc, h.BaseURL, "/login", url.Values{"email": {alice}, "password": {alicePW}}, c); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("alice's page sign-in with cookie %q: %d", c.Value, resp.StatusCode)
		}
	}
	if got := deviceLogs(h); got != n {
		t.Fatalf("a foreign, tampered or garbage cookie counted: %d device sign-ins logged", got-n)
	}

	// A wrong password with the cookie: a failure as usual (401, counted),
	// and the browser is told to drop the cookie on both paths.
	resp = rawPost(t, hc, h.BaseURL, "/api/v1/login", map[string]string{"email": alice, "password": "a wrong guess 456"}, aliceCookie)
	cleared := deviceCookiesSet(resp.Header)
	if resp.StatusCode != 401 || len(cleared) != 2 || cleared["/login"].MaxAge >= 0 || cleared["/api/v1/login"].MaxAge >= 0 {
		t.Fatalf("wrong password with the cookie: %d, device cookies %v, want 401 and both cleared", resp.StatusCode, cleared)
	}

	// A second factor: nothing after the password, the cookie once the
	// code is right (and not after a wrong code).
	addAdmin(t, h, "dc.admin@clinic.example")
	now := time.Now()
	_, secret := signInStaff(t, h, "dc.admin@clinic.example", adminPW, now)
	c := h.Client()
	st, hdr, _ := c.Do("POST", "/api/v1/login", map[string]string{"email": "dc.admin@clinic.example", "password": adminPW}, nil)
	if st != 200 || len(deviceCookiesSet(hdr)) != 0 {
		t.Fatalf("password step of a 2FA account: %d, device cookies %v, want none yet", st, deviceCookiesSet(hdr))
	}
	st, hdr, _ = c.Do("POST", "/api/v1/login/2fa", map[string]string{"code": "000000"}, nil)
	if st != 401 || len(deviceCookiesSet(hdr)) != 0 {
		t.Fatalf("wrong code: %d, device cookies %v", st, deviceCookiesSet(hdr))
	}
	st, hdr, _ = c.Do("POST", "/api/v1/login/2fa", map[string]string{"code": e2e.TOTPCode(t, secret, now.Add(30*time.Second))}, nil)
	if set := deviceCookiesSet(hdr); st != 200 || len(set) != 2 {
		t.Fatalf("second factor done: %d, device cookies %v", st, set)
	}
	// The jar sends it with the next password step: it counts.
	n = deviceLogs(h)
	c.JSON("POST", "/api/v1/login", map[string]string{"email": "dc.admin@clinic.example", "password": adminPW}, 200, nil)
	if got := deviceLogs(h); got != n+1 {
		t.Fatalf("admin's next sign-in from the same browser: %d device sign-ins logged, want 1", got-n)
	}
}

// TestDeviceCookiePriority (issue 12.3): with one hash slot and 60 sign-in
// attempts from 60 fresh addresses queued (each as "good" as the account
// holder's), the holder's sign-in with a device cookie is served before
// most of them; concurrent sign-ins with the same cookie beyond the
// priority lane's bound are still all answered (the ordinary queue). An
// order, not a time, is asserted.
func TestDeviceCookiePriority(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Keys.MaxConcurrentPassword = 1
	cfg.Keys.PasswordTime, cfg.Keys.PasswordMemoryKiB = 1, 16*1024 // tens of ms a hash: a queue that takes a while
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	const holder, pw = "dc.holder@example.net", "saffron harbour quartz 77"
	claimNew(t, h, pass, holder, pw)
	hc := noRedirects()
	resp := rawPost(t, hc, h.BaseURL, "/api/v1/login", map[string]string{"email": holder, "password": pw})
	device := deviceCookiesSet(resp.Header)["/api/v1/login"]
	if resp.StatusCode != 200 || device == nil {
		t.Fatalf("holder's first sign-in: %d, no device cookie", resp.StatusCode)
	}

	const flood = 60
	var answered atomic.Int64
	var wg sync.WaitGroup
	for i := range flood {
		fc := fromAddr(fmt.Sprintf("127.60.%d.%d", i/200, 10+i%200), 1)
		wg.Go(func() {
			signIn(fc, h.BaseURL, fmt.Sprintf("dcflood%d@example.net", i), "a guess 1234")
			answered.Add(1)
		})
	}
	time.Sleep(100 * time.Millisecond) // let the flood queue up first
	lc := fromAddr("127.0.0.1", 4)
	send := func() int {
		b, _ := json.Marshal(map[string]string{"email": holder, "password": pw})
		req, _ := http.NewRequest("POST", h.BaseURL+"/api/v1/login", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.AddCookie(device)
		resp, err := lc.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := send(); st != 200 {
		t.Fatalf("holder with the device cookie during the flood: %d", st)
	}
	before := answered.Load()
	// Three at once from the holder's browser: one in the lane (its bound
	// per account), the rest in the ordinary queue; all answered.
	var holderWG sync.WaitGroup
	statuses := make(chan int, 3)
	for range 3 {
		holderWG.Go(func() { statuses <- send() })
	}
	holderWG.Wait()
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != 200 && st != http.StatusTooManyRequests {
			t.Errorf("concurrent holder sign-in: %d", st)
		}
	}
	if before >= flood/2 {
		t.Errorf("the holder with a device cookie was served after %d of %d queued flood attempts, want before most", before, flood)
	}
	t.Logf("holder served after %d of %d flood attempts", before, flood)
}
