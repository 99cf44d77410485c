package gateway_test

// Redis outages (issue 9.4): while the gateway's Redis is stopped or hung,
// the portal fails closed without harm, and it comes back by itself.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/phigate/phigate/alert"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/internal/testtool"
	"github.com/phigate/phigate/portal"
)

// outageCap is a generous sanity bound on one request during an outage: a
// request waiting on a hung Redis without a timeout would hang for minutes.
// It is not the speed claim (docs/perf.md measures that).
const outageCap = 20 * time.Second

// outageGateway starts a gateway on a private Redis, with a staff sender and
// a signed-in patient (alice, who has one message).
type outageRun struct {
	srv   *redistest.Server
	h     *e2e.Harness
	pass  string
	alice *e2e.Client
	msgID string
	token string
}

func startOutageRun(t *testing.T) *outageRun {
	t.Helper()
	srv := redistest.Start(t)
	cfg := nodeConfig(t.TempDir())
	cfg.Redis.URL = "redis://" + srv.Addr + "/0"
	cfg.Redis.ProbeInterval = config.Duration{Duration: 100 * time.Millisecond}
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	alice, id := claimNew(t, h, pass, "alice@example.net", patientPW)
	return &outageRun{srv: srv, h: h, pass: pass, alice: alice, msgID: id, token: nodeCookie(t, alice)}
}

// persist makes Redis write its data to disk, so a Restart finds the
// sessions again, as a Redis with persistence would.
func (o *outageRun) persist(t *testing.T) {
	t.Helper()
	if err := o.srv.Client(t).Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// capped does one request with a client whose timeout is outageCap.
func capped(t *testing.T, c *e2e.Client, method, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	old := c.HTTP.Timeout
	c.HTTP.Timeout = outageCap
	defer func() { c.HTTP.Timeout = old }()
	return c.Do(method, path, body, nil)
}

// want503 checks an answer given during the outage: 503 with Retry-After,
// the JSON error or the page, and no Set-Cookie at all (the session cookie
// is kept, never expired).
func want503(t *testing.T, what string, st int, hdr http.Header, body []byte, api bool) {
	t.Helper()
	if st != http.StatusServiceUnavailable {
		t.Errorf("%s: status %d, want 503: %s", what, st, body)
		return
	}
	if hdr.Get("Retry-After") == "" {
		t.Errorf("%s: no Retry-After", what)
	}
	if sc := hdr.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("%s: Set-Cookie %q during the outage; the cookie must be kept", what, sc)
	}
	if hdr.Get("Clear-Site-Data") != "" {
		t.Errorf("%s: Clear-Site-Data during the outage", what)
	}
	if api {
		var e struct{ Error, Message, Ref string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error != "unavailable" || e.Ref == "" {
			t.Errorf("%s: JSON %s (%v), want error \"unavailable\" with a ref", what, body, err)
		}
	} else if !strings.Contains(string(body), "briefly unavailable") || !strings.Contains(string(body), "still are") {
		t.Errorf("%s: page does not say the portal is briefly unavailable and the person still signed in: %s", what, body)
	}
}

func countAudit(t *testing.T, h *e2e.Harness, q audit.Query) []audit.Entry {
	t.Helper()
	es, err := h.G.Trail.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func redisAlerts(h *e2e.Harness) int {
	n := 0
	for _, a := range h.G.Alerts.Recent(0) {
		if a.Kind == alert.KindRedisOutage {
			n++
		}
	}
	return n
}

// wantMetric checks that the gateway's metrics page has the line want.
func wantMetric(t *testing.T, h *e2e.Harness, want string) {
	t.Helper()
	resp, err := http.Get("http://" + h.G.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if l == want {
			return
		}
	}
	t.Errorf("metrics lack %q", want)
}

// waitBack polls the patient's message list until it answers 200 again.
func (o *outageRun) waitBack(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(outageCap)
	for {
		st, _, b := capped(t, o.alice, "GET", "/api/v1/messages/"+o.msgID, nil)
		if st == http.StatusOK {
			return
		}
		if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after Redis returned: %d %s", st, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisOutage: with Redis stopped, and with Redis hung (SIGSTOP), every
// portal request that needs it answers 503 (page or JSON) instead of
// hanging, signing the person out or counting a failed sign-in; the cookie
// is kept; the outage is logged, audited and alerted once; SMTP intake goes
// on; and when Redis returns the same cookie works again, by itself.
func TestRedisOutage(t *testing.T) {
	for _, mode := range []string{"stopped", "hung"} {
		t.Run(mode, func(t *testing.T) {
			o := startOutageRun(t)
			h := o.h
			if mode == "stopped" {
				o.persist(t)
				o.srv.Stop()
			} else {
				o.srv.Pause(t)
				t.Cleanup(func() { o.srv.Continue(t) })
			}

			// The first request meets the outage itself (the session
			// lookup, or the lock-out counter of a sign-in); the others
			// find Redis already known down.
			if mode == "stopped" {
				st, hdr, b := capped(t, o.alice, "GET", "/api/v1/messages/"+o.msgID, nil)
				want503(t, "API with a session (first)", st, hdr, b, true)
			} else {
				st, hdr, b := capped(t, h.Client(), "POST", "/api/v1/login", map[string]string{"email": "alice@example.net", "password": "wrong password 1"})
				want503(t, "API sign-in, wrong password (first)", st, hdr, b, true)
			}
			st, hdr, b := capped(t, o.alice, "GET", "/inbox", nil)
			want503(t, "inbox page", st, hdr, b, false)
			st, hdr, b = capped(t, o.alice, "GET", "/api/v1/messages", nil)
			want503(t, "API message list", st, hdr, b, true)
			st, hdr, b = capped(t, h.Client(), "POST", "/login", "email=alice%40example.net&password=wrong+password+2")
			want503(t, "sign-in page, wrong password", st, hdr, b, false)
			st, hdr, b = capped(t, h.Client(), "POST", "/api/v1/login", map[string]string{"email": "alice@example.net", "password": patientPW})
			want503(t, "API sign-in, right password", st, hdr, b, true)
			if got := nodeCookie(t, o.alice); got != o.token {
				t.Error("the browser's session cookie changed during the outage")
			}
			// A page's websocket is refused without being told "ended".
			d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: outageCap}
			wh := http.Header{"Origin": {"https://" + h.HTTPS}, "Cookie": {portal.CookieName + "=" + o.token}}
			if ws, resp, err := d.Dial("wss://"+h.HTTPS+"/ws", wh); err == nil {
				ws.Close()
				t.Error("websocket accepted during the outage")
			} else if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("websocket during the outage: %v %v", resp, err)
			}

			// SMTP intake goes on.
			before := len(h.Notices())
			msg := e2e.Multipart(staff, "Dr Lee", "bob@example.org", "During the outage", "body", "<p>x</p>", "f.txt", []byte("data"))
			if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: o.pass, From: staff, To: []string{"bob@example.org"}, Msg: msg}); err != nil {
				t.Errorf("SMTP during the outage: %v", err)
			} else {
				h.WaitNotices(before + 1)
			}

			// No false sign-in failures; the outage on record once.
			if es := countAudit(t, h, audit.Query{Action: "auth.login"}); len(es) != 1 || es[0].Outcome != "ok" {
				t.Errorf("auth.login entries %+v, want only the claim's sign-in", es)
			}
			if es := countAudit(t, h, audit.Query{Action: "auth.logoff"}); len(es) != 0 {
				t.Errorf("sessions ended during the outage: %+v", es)
			}
			if es := countAudit(t, h, audit.Query{Action: alert.ActionRedis}); len(es) != 1 || es[0].Outcome != "failed" {
				t.Errorf("service.redis entries %+v, want one failed", es)
			}
			if n := redisAlerts(h); n != 1 {
				t.Errorf("%d redis-outage alerts, want 1", n)
			}
			if n := strings.Count(h.Logs.String(), `msg="redis unavailable: portal`); n != 1 {
				t.Errorf("outage logged %d times, want once", n)
			}
			wantMetric(t, h, "phigate_redis_up 0")

			// Redis returns: the same cookie works again.
			if mode == "stopped" {
				o.srv.Restart(t)
			} else {
				o.srv.Continue(t)
			}
			o.waitBack(t)
			var m msgJSON
			o.alice.JSON("GET", "/api/v1/messages/"+o.msgID, nil, 200, &m)
			if m.Text != "body for alice@example.net" {
				t.Errorf("after the outage: %q", m.Text)
			}
			h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "alice@example.net", "password": patientPW}, 200, nil)
			if es := countAudit(t, h, audit.Query{Action: alert.ActionRedis, Outcome: "ok"}); len(es) != 1 {
				t.Errorf("recovery audited %d times, want once", len(es))
			}
			if n := strings.Count(h.Logs.String(), `msg="redis available again`); n != 1 {
				t.Errorf("recovery logged %d times, want once", n)
			}
			if n := redisAlerts(h); n != 1 {
				t.Errorf("%d redis-outage alerts after recovery, want still 1", n)
			}
			wantMetric(t, h, "phigate_redis_up 1")
		})
	}
}

// BenchmarkRedisOutage measures, for a stopped Redis (restarted with its
// data) and a hung one (SIGSTOP, then SIGCONT): how long the first portal
// request of the outage takes to get its 503, and the time from Redis
// answering again to the first request served 200 with the session kept
// through the outage (docs/perf.md), at the default probe interval and at
// a tenth of it.
func BenchmarkRedisOutage(b *testing.B) {
	for _, probe := range []time.Duration{time.Second, 100 * time.Millisecond} {
		for _, mode := range []string{"stopped", "hung"} {
			b.Run(fmt.Sprintf("%s/probe=%s", mode, probe), func(b *testing.B) { benchOutage(b, mode, probe) })
		}
	}
}

func benchOutage(b *testing.B, mode string, probe time.Duration) {
	srv := redistest.Start(b)
	cfg := nodeConfig(b.TempDir())
	cfg.Redis.URL = "redis://" + srv.Addr + "/0"
	cfg.Redis.ProbeInterval = config.Duration{Duration: probe}
	h := e2e.Start(b, cfg)
	pass := h.AddStaff(staff)
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"alice@example.net"},
		Msg: e2e.Multipart(staff, "Dr Lee", "alice@example.net", "s", "body", "<p>x</p>", "f.txt", []byte("data"))}); err != nil {
		b.Fatal(err)
	}
	c := h.Client()
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": e2e.ClaimToken(b, h.WaitNotices(1)[0]), "password": patientPW}, 200, nil)
	get := func() int {
		resp, err := c.HTTP.Get(c.Base + "/api/v1/messages")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var first, recover time.Duration
	for i := 0; i < b.N; i++ {
		if mode == "stopped" {
			if err := srv.Client(b).Save(context.Background()).Err(); err != nil {
				b.Fatal(err)
			}
			srv.Stop()
		} else {
			srv.Pause(b)
		}
		start := time.Now()
		if st := get(); st != http.StatusServiceUnavailable {
			b.Fatalf("during the outage: %d", st)
		}
		first += time.Since(start)
		if mode == "stopped" {
			srv.Restart(b)
		} else {
			srv.Continue(b)
		}
		start = time.Now()
		for get() != http.StatusOK {
			time.Sleep(10 * time.Millisecond)
		}
		recover += time.Since(start)
	}
	b.ReportMetric(0, "ns/op") // the clock above is kept by hand
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms-first-503")
	b.ReportMetric(float64(recover.Milliseconds())/float64(b.N), "ms-to-recover")
}

// TestBrowserRedisOutage: a patient's open message page in a real browser
// lives through a Redis outage. The page is not wiped nor sent to the
// sign-in page when its websocket finds Redis gone; reloading it shows the
// "briefly unavailable" page; once Redis is back, the same browser (the
// same cookie) sees the message again without signing in.
func TestBrowserRedisOutage(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("the real-browser test takes about 15 s")
	}
	o := startOutageRun(t)
	h := o.h
	b := newBrowser(t, chromium)
	tb := b.first
	tb.navigate(h.BaseURL + "/login")
	tb.waitFor("sign-in page", `document.querySelector('#email') !== null`, 10*time.Second)
	tb.do(
		chromedp.SendKeys(chromedp.CSS("#email"), "alice@example.net"),
		chromedp.SendKeys(chromedp.CSS("#password"), patientPW),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
	tb.waitFor("inbox", `location.pathname === '/inbox' && document.querySelector('ul.inbox a') !== null`, 15*time.Second)
	msgURL := h.BaseURL + "/messages/" + o.msgID
	tb.navigate(msgURL)
	tb.waitFor("the message", `document.querySelector('h1') !== null && document.querySelector('h1').innerText.includes('For alice@example.net')`, 15*time.Second)
	tb.recordExit()

	o.persist(t)
	o.srv.Stop()
	// The page's websocket checks the session every few seconds: that
	// check is what meets the outage (nothing else is asking Redis).
	deadline := time.Now().Add(outageCap)
	for !h.G.RedisGuard.Down() {
		if time.Now().After(deadline) {
			t.Fatal("the open page's websocket never met the outage")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Give the page time to act on its closed websocket (it would go to
	// the sign-in page at once if told "ended"), then check it stayed.
	time.Sleep(3 * time.Second)
	if p := tb.eval(`location.pathname`); p != "/messages/"+o.msgID {
		t.Fatalf("the open page went to %s during the outage", p)
	}
	tb.expectText("h1", "For alice@example.net")
	if note := tb.eval(`sessionStorage.getItem('phigate-test-exit') || ''`); note != "" {
		t.Error("the open page was left (wiped) during the outage")
	}

	tb.navigate(msgURL)
	tb.waitFor("the unavailable page", `document.querySelector('h1') !== null && document.querySelector('h1').innerText.includes('Briefly unavailable')`, 10*time.Second)
	tb.expectText(".alert", "you still are")

	o.srv.Restart(t)
	deadline = time.Now().Add(outageCap)
	for {
		tb.navigate(msgURL)
		if evalAs[bool](tb, `document.querySelector('h1') !== null && document.querySelector('h1').innerText.includes('For alice@example.net')`) {
			break
		}
		if p := tb.eval(`location.pathname`); p == "/login" || time.Now().After(deadline) {
			t.Fatalf("after Redis returned the page is at %s, not the message", tb.where())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
