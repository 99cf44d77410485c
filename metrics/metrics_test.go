package metrics

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches m's exposition through its Handler and parses it.
func scrape(t *testing.T, m *M) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	text := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, text)
	}
	return text, fams
}

// series finds the metric of family name whose labels are exactly labels
// (given as name, value pairs).
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, mt := range fam.GetMetric() {
		if len(mt.GetLabel()) != len(want) {
			continue
		}
		for _, lp := range mt.GetLabel() {
			if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
				continue next
			}
		}
		return mt
	}
	t.Fatalf("no series %s%v; have %v", name, want, fam.GetMetric())
	return nil
}

func counter(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	return series(t, fams, name, labels...).GetCounter().GetValue()
}

func gauge(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	return series(t, fams, name, labels...).GetGauge().GetValue()
}

func histo(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) (uint64, float64) {
	t.Helper()
	h := series(t, fams, name, labels...).GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}

// labelValues lists the values of label in every series of family name.
func labelValues(fams map[string]*dto.MetricFamily, name, label string) []string {
	var out []string
	for _, mt := range fams[name].GetMetric() {
		for _, lp := range mt.GetLabel() {
			if lp.GetName() == label {
				out = append(out, lp.GetValue())
			}
		}
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestFamiliesPresentAndZeroInitialised(t *testing.T) {
	m := New()
	_, fams := scrape(t, m)
	for _, name := range []string{
		"phigate_smtp_accepted_total", "phigate_smtp_refused_total",
		"phigate_notices_sent_total", "phigate_notices_failed_total",
		"phigate_outbox_depth", "phigate_outbox_oldest_seconds",
		"phigate_signin_failures_total", "phigate_lockouts_total",
		"phigate_websocket_connections", "phigate_audit_write_seconds",
		"go_goroutines",
	} {
		if _, ok := fams[name]; !ok {
			t.Errorf("family %s missing from a fresh scrape", name)
		}
	}
	for _, r := range []string{"auth", "tls", "sender", "recipients", "size", "line", "policy", "fault", "other"} {
		if v := counter(t, fams, "phigate_smtp_refused_total", "reason", r); v != 0 {
			t.Errorf("refused{%s} = %v at start", r, v)
		}
	}
	if _, ok := fams["phigate_sessions_active"]; ok {
		t.Error("phigate_sessions_active present before SessionsFunc")
	}
	// Histograms with labels appear only once observed.
	if _, ok := fams["phigate_http_request_duration_seconds"]; ok {
		t.Error("http histogram has series before any request")
	}
}

func TestSMTP(t *testing.T) {
	m := New()
	for _, a := range []string{"portal", "portal", "relay", "pgp", "quarantine", "reject", "PORTAL"} {
		m.SMTPAccepted(a)
	}
	for _, r := range []string{"auth", "tls", "sender", "recipients", "size", "line", "policy", "fault", "other", "bogus", ""} {
		m.SMTPRefused(r)
	}
	m.SMTPDuration("data", 3*time.Millisecond)
	m.SMTPDuration("data", 2*time.Second)
	m.SMTPDuration("greeting", time.Second)
	m.SMTPDuration("data", -time.Second) // clamped to 0

	_, fams := scrape(t, m)
	for action, want := range map[string]float64{"portal": 3, "relay": 1, "pgp": 1, "quarantine": 1, "other": 1} {
		if got := counter(t, fams, "phigate_smtp_accepted_total", "action", action); got != want {
			t.Errorf("accepted{%s} = %v, want %v", action, got, want)
		}
	}
	for _, r := range []string{"auth", "tls", "sender", "recipients", "size", "line", "policy", "fault"} {
		if got := counter(t, fams, "phigate_smtp_refused_total", "reason", r); got != 1 {
			t.Errorf("refused{%s} = %v, want 1", r, got)
		}
	}
	if got := counter(t, fams, "phigate_smtp_refused_total", "reason", "other"); got != 3 {
		t.Errorf("refused{other} = %v, want 3", got)
	}
	if n := len(fams["phigate_smtp_refused_total"].GetMetric()); n != 9 {
		t.Errorf("refused has %d series, want 9", n)
	}
	n, sum := histo(t, fams, "phigate_smtp_duration_seconds", "stage", "data")
	if n != 3 || !near(sum, 2.003) {
		t.Errorf("smtp duration{data}: count %d sum %v, want 3, 2.003", n, sum)
	}
	if n, _ := histo(t, fams, "phigate_smtp_duration_seconds", "stage", "other"); n != 1 {
		t.Errorf("smtp duration{other}: count %d, want 1", n)
	}
	// Buckets span 1 ms .. 10 s.
	b := series(t, fams, "phigate_smtp_duration_seconds", "stage", "data").GetHistogram().GetBucket()
	var bounds []float64
	for _, bk := range b {
		if !math.IsInf(bk.GetUpperBound(), +1) {
			bounds = append(bounds, bk.GetUpperBound())
		}
	}
	if len(bounds) < 8 || bounds[0] != 0.001 || bounds[len(bounds)-1] != 10 {
		t.Errorf("buckets %v, want 0.001 .. 10", bounds)
	}
	// The 3 ms observation and the clamped one are at or below 5 ms.
	for _, bk := range b {
		if bk.GetUpperBound() == 0.005 && bk.GetCumulativeCount() != 2 {
			t.Errorf("bucket le=0.005 = %d, want 2", bk.GetCumulativeCount())
		}
	}
}

func TestNoticesAndQueue(t *testing.T) {
	m := New()
	m.NoticeSent("new-message")
	m.NoticeSent("new-message")
	m.NoticeSent("password-reset")
	m.NoticeSent("security-alert")
	m.NoticeSent("digest")
	m.NoticeFailed("new-message", false)
	m.NoticeFailed("new-message", true)
	m.NoticeFailed("new-message", true)
	m.NoticeFailed("weird", false)
	m.SetQueue(7, 90*time.Second)

	_, fams := scrape(t, m)
	for kind, want := range map[string]float64{"new-message": 2, "password-reset": 1, "security-alert": 1, "other": 1} {
		if got := counter(t, fams, "phigate_notices_sent_total", "kind", kind); got != want {
			t.Errorf("sent{%s} = %v, want %v", kind, got, want)
		}
	}
	for _, c := range []struct {
		kind, perm string
		want       float64
	}{{"new-message", "false", 1}, {"new-message", "true", 2}, {"other", "false", 1}, {"password-reset", "true", 0}} {
		if got := counter(t, fams, "phigate_notices_failed_total", "kind", c.kind, "permanent", c.perm); got != c.want {
			t.Errorf("failed{%s,%s} = %v, want %v", c.kind, c.perm, got, c.want)
		}
	}
	if got := gauge(t, fams, "phigate_outbox_depth"); got != 7 {
		t.Errorf("depth = %v", got)
	}
	if got := gauge(t, fams, "phigate_outbox_oldest_seconds"); got != 90 {
		t.Errorf("oldest = %v", got)
	}

	m.SetQueue(0, 0)
	_, fams = scrape(t, m)
	if gauge(t, fams, "phigate_outbox_depth") != 0 || gauge(t, fams, "phigate_outbox_oldest_seconds") != 0 {
		t.Error("SetQueue(0, 0) did not reset the gauges")
	}
	m.SetQueue(-3, -time.Second)
	_, fams = scrape(t, m)
	if gauge(t, fams, "phigate_outbox_depth") != 0 || gauge(t, fams, "phigate_outbox_oldest_seconds") != 0 {
		t.Error("negative SetQueue not clamped to 0")
	}
}

func TestPortal(t *testing.T) {
	m := New()
	m.SignInFailure("password")
	m.SignInFailure("password")
	m.SignInFailure("second-factor")
	m.SignInFailure("patient@example.com")
	m.Lockout()
	m.Lockout()
	m.WebsocketConnected(+1)
	m.WebsocketConnected(+1)
	m.WebsocketConnected(+1)
	m.WebsocketConnected(-1)
	m.HTTPDuration("GET /messages/{id}", 200, 20*time.Millisecond)
	m.HTTPDuration("GET /messages/{id}", 404, 5*time.Millisecond)
	m.HTTPDuration("GET /messages/{id}", 0, 5*time.Millisecond) // 0: 200
	m.HTTPDuration("POST /login", 303, time.Millisecond)
	m.HTTPDuration("GET /{$}", 500, time.Millisecond)
	m.HTTPDuration("GET /static/", 200, time.Millisecond)
	m.HTTPDuration("", 200, time.Millisecond) // no pattern matched
	m.HTTPDuration("GET /ws", 101, time.Millisecond)
	m.HTTPDuration("GET /ws", 999, time.Millisecond)
	m.AuditWrite(2 * time.Millisecond)
	m.AuditWrite(500 * time.Microsecond)

	_, fams := scrape(t, m)
	for f, want := range map[string]float64{"password": 2, "second-factor": 1, "other": 1} {
		if got := counter(t, fams, "phigate_signin_failures_total", "factor", f); got != want {
			t.Errorf("signin{%s} = %v, want %v", f, got, want)
		}
	}
	if got := counter(t, fams, "phigate_lockouts_total"); got != 2 {
		t.Errorf("lockouts = %v", got)
	}
	if got := gauge(t, fams, "phigate_websocket_connections"); got != 2 {
		t.Errorf("websockets = %v", got)
	}
	const h = "phigate_http_request_duration_seconds"
	for _, c := range []struct {
		route, code string
		n           uint64
	}{
		{"GET /messages/{id}", "2xx", 2},
		{"GET /messages/{id}", "4xx", 1},
		{"POST /login", "3xx", 1},
		{"GET /{$}", "5xx", 1},
		{"GET /static/", "2xx", 1},
		{"other", "2xx", 1},
		{"GET /ws", "1xx", 1},
		{"GET /ws", "other", 1},
	} {
		if n, _ := histo(t, fams, h, "route", c.route, "code", c.code); n != c.n {
			t.Errorf("http{%s,%s} count = %d, want %d", c.route, c.code, n, c.n)
		}
	}
	if _, sum := histo(t, fams, h, "route", "GET /messages/{id}", "code", "2xx"); !near(sum, 0.025) {
		t.Errorf("http sum = %v, want 0.025", sum)
	}
	if n, sum := histo(t, fams, "phigate_audit_write_seconds"); n != 2 || !near(sum, 0.0025) {
		t.Errorf("audit: %d %v", n, sum)
	}
}

func TestSessionsFunc(t *testing.T) {
	m := New()
	n := 3
	m.SessionsFunc(func() int { return n })
	_, fams := scrape(t, m)
	if got := gauge(t, fams, "phigate_sessions_active"); got != 3 {
		t.Errorf("sessions = %v, want 3", got)
	}
	n = 5 // read at scrape time
	_, fams = scrape(t, m)
	if got := gauge(t, fams, "phigate_sessions_active"); got != 5 {
		t.Errorf("sessions = %v, want 5", got)
	}
	// A second call replaces the callback without a duplicate registration.
	m.SessionsFunc(func() int { return 11 })
	_, fams = scrape(t, m)
	if got := gauge(t, fams, "phigate_sessions_active"); got != 11 {
		t.Errorf("sessions = %v, want 11", got)
	}
	m.SessionsFunc(nil) // ignored
	m.SessionsFunc(func() int { panic("store down") })
	_, fams = scrape(t, m)
	if got := gauge(t, fams, "phigate_sessions_active"); !math.IsNaN(got) {
		t.Errorf("sessions after panic = %v, want NaN", got)
	}
}

func TestRouteShape(t *testing.T) {
	ok := []string{
		"GET /messages/{id}", "GET /messages/{id}/attachments/{aid}",
		"POST /admin/users/{id}/{action}", "GET /{$}", "GET /static/",
		"GET /api/v1/messages", "GET /account/2fa", "POST /api/v1/login/2fa",
		"GET /claim/{token}", "/healthz", "GET /files/{path...}",
		"GET /.well-known/security.txt", "HEAD /", "GET /",
	}
	bad := []string{
		"", "other", "/messages/3f2a9c4e7b1d", "GET /messages/3f2a9c4e7b1d5a60",
		"GET /messages/123456", "GET /messages/42424", "/messages/3f2a9c...",
		"GET /inbox?to=patient@example.com", "GET /u/patient@example.com",
		"patient@example.com", "GET /Jane-Doe", "GET /messages/%40x",
		"GET  /messages", "get /messages", "BREW /coffee", "GET messages",
		"GET example.com/messages", "GET /claim/Xk3jd9QpLm2v8WzR", "GET /a b",
		"GET /claim/0b6c7e1a-5f1d-4a8e-9c3f-2d9e8b7a6c5f", "GET /../etc",
		"GET /m/3f2a9c", "GET /m/abc12", "GET /m/x...y",
		"GET /{id}x", "GET /{$}/x", "GET /{a...}/b", "GET /{}", "GET /{1d}",
		"GET /" + strings.Repeat("a", 40), "GET /" + strings.Repeat("a/", 70),
		"GET //x", "GET /x\n", "GET /x\x00", "GET /mensajes/ñ",
	}
	for _, r := range ok {
		if !routeShapeOK(r) {
			t.Errorf("routeShapeOK(%q) = false, want true", r)
		}
	}
	for _, r := range bad {
		if routeShapeOK(r) {
			t.Errorf("routeShapeOK(%q) = true, want false", r)
		}
	}
}

func TestLabelSanitising(t *testing.T) {
	m := New()
	phi := []string{
		"patient@example.com",
		"/messages/3f2a9c4e7b1d5a60",
		"GET /messages/3f2a9c4e7b1d5a60",
		"Jane Doe <jane@example.org>",
		"Re: HIV test results",
		"GET /inbox?q=diabetes",
	}
	for _, v := range phi {
		m.SMTPAccepted(v)
		m.SMTPRefused(v)
		m.SMTPDuration(v, time.Millisecond)
		m.NoticeSent(v)
		m.NoticeFailed(v, true)
		m.SignInFailure(v)
		m.HTTPDuration(v, 200, time.Millisecond)
	}
	text, fams := scrape(t, m)
	for _, v := range phi {
		if strings.Contains(text, v) {
			t.Errorf("scrape contains %q", v)
		}
	}
	for _, bit := range []string{"@", "3f2a9c", "patient", "Doe", "HIV", "diabetes"} {
		if strings.Contains(text, bit) {
			t.Errorf("scrape contains %q", bit)
		}
	}
	if got := counter(t, fams, "phigate_smtp_refused_total", "reason", "other"); got != float64(len(phi)) {
		t.Errorf("refused{other} = %v, want %d", got, len(phi))
	}
	if routes := labelValues(fams, "phigate_http_request_duration_seconds", "route"); len(routes) != 1 || routes[0] != "other" {
		t.Errorf("routes = %v, want [other]", routes)
	}
	if n, _ := histo(t, fams, "phigate_http_request_duration_seconds", "route", "other", "code", "2xx"); n != uint64(len(phi)) {
		t.Errorf("http{other} count = %d, want %d", n, len(phi))
	}
}

func TestAllowRoutes(t *testing.T) {
	m := New()
	m.AllowRoutes("GET /messages/{id}", "POST /login", "GET /messages/123456" /* dropped: bad shape */)
	m.HTTPDuration("GET /messages/{id}", 200, time.Millisecond)
	m.HTTPDuration("POST /login", 200, time.Millisecond)
	m.HTTPDuration("GET /inbox", 200, time.Millisecond) // well shaped, not listed
	m.HTTPDuration("GET /messages/123456", 200, time.Millisecond)
	_, fams := scrape(t, m)
	got := map[string]bool{}
	for _, r := range labelValues(fams, "phigate_http_request_duration_seconds", "route") {
		got[r] = true
	}
	if len(got) != 3 || !got["GET /messages/{id}"] || !got["POST /login"] || !got["other"] {
		t.Errorf("routes = %v", got)
	}
	if n, _ := histo(t, fams, "phigate_http_request_duration_seconds", "route", "other", "code", "2xx"); n != 2 {
		t.Errorf("other count = %d, want 2", n)
	}
	m.AllowRoutes() // back to the shape check only
	m.HTTPDuration("GET /inbox", 200, time.Millisecond)
	_, fams = scrape(t, m)
	if n, _ := histo(t, fams, "phigate_http_request_duration_seconds", "route", "GET /inbox", "code", "2xx"); n != 1 {
		t.Errorf("GET /inbox count = %d, want 1", n)
	}
}

func TestRouteCardinalityCap(t *testing.T) {
	m := New()
	// Well-shaped but ever-new routes (a caller bug) stop at maxRoutes.
	for i := range maxRoutes + 50 {
		m.HTTPDuration(fmt.Sprintf("GET /r/%s", word(i)), 200, time.Millisecond)
	}
	_, fams := scrape(t, m)
	routes := labelValues(fams, "phigate_http_request_duration_seconds", "route")
	if len(routes) != maxRoutes+1 {
		t.Errorf("%d route series, want %d (+other)", len(routes), maxRoutes+1)
	}
	if n, _ := histo(t, fams, "phigate_http_request_duration_seconds", "route", "other", "code", "2xx"); n != 50 {
		t.Errorf("other count = %d, want 50", n)
	}
	// A route seen before the cap still gets its own series.
	m.HTTPDuration("GET /r/"+word(0), 200, time.Millisecond)
	_, fams = scrape(t, m)
	if n, _ := histo(t, fams, "phigate_http_request_duration_seconds", "route", "GET /r/"+word(0), "code", "2xx"); n != 2 {
		t.Errorf("first route count = %d, want 2", n)
	}
}

// word spells i in letters (a digit-free literal segment).
func word(i int) string {
	var b []byte
	for {
		b = append(b, byte('a'+i%26))
		i /= 26
		if i == 0 {
			return string(b)
		}
	}
}

// TestCanary feeds canary strings through every label-taking method and
// checks that none of them, nor any part of them, reaches the scrape.
func TestCanary(t *testing.T) {
	canaries := []string{
		"CANARY-PHI-7f3a9c2e41d8b605",
		"canary.phi.7f3a9c2e41d8b605@patient.example",
		"GET /canary/7f3a9c2e41d8b605",
		"GET /CANARYPHI",
		"POST /messages/{id}?canaryphi=1",
	}
	m := New()
	m.SessionsFunc(func() int { return 1 })
	for _, c := range canaries {
		m.SMTPAccepted(c)
		m.SMTPRefused(c)
		m.SMTPDuration(c, time.Millisecond)
		m.NoticeSent(c)
		m.NoticeFailed(c, false)
		m.NoticeFailed(c, true)
		m.SignInFailure(c)
		m.HTTPDuration(c, 200, time.Millisecond)
	}
	text, _ := scrape(t, m)
	for _, needle := range []string{"canary", "7f3a9c2e41d8b605", "patient.example", "canaryphi"} {
		if strings.Contains(strings.ToLower(text), needle) {
			t.Errorf("scrape contains %q", needle)
		}
	}

	// With AllowRoutes, even a plain well-shaped word never reaches a label.
	m = New()
	m.AllowRoutes("GET /messages/{id}")
	m.HTTPDuration("GET /canaryphi", 200, time.Millisecond)
	text, _ = scrape(t, m)
	if strings.Contains(text, "canaryphi") {
		t.Error("allow-listed scrape contains the canary route")
	}
}

func TestNilAndZeroReceiver(t *testing.T) {
	for name, m := range map[string]*M{"nil": nil, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			m.SMTPAccepted("portal")
			m.SMTPRefused("auth")
			m.SMTPDuration("data", time.Second)
			m.NoticeSent("new-message")
			m.NoticeFailed("new-message", true)
			m.SetQueue(1, time.Second)
			m.SignInFailure("password")
			m.Lockout()
			m.HTTPDuration("GET /x", 200, time.Second)
			m.AllowRoutes("GET /x")
			m.WebsocketConnected(1)
			m.SessionsFunc(func() int { return 1 })
			m.AuditWrite(time.Second)
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if rec.Code != http.StatusNotFound {
				t.Errorf("Handler status %d, want 404", rec.Code)
			}
			if _, err := Serve(context.Background(), "127.0.0.1:0", false, m); err == nil {
				t.Error("Serve accepted an unusable *M")
			}
		})
	}
}

func TestSeparateRegistries(t *testing.T) {
	a, b := New(), New() // must not panic on duplicate registration
	a.Lockout()
	_, fa := scrape(t, a)
	_, fb := scrape(t, b)
	if counter(t, fa, "phigate_lockouts_total") != 1 || counter(t, fb, "phigate_lockouts_total") != 0 {
		t.Error("two M share state")
	}
}

func TestConcurrentUse(t *testing.T) {
	m := New()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				m.SMTPAccepted("portal")
				m.HTTPDuration(fmt.Sprintf("GET /g/%s", word(g*200+i)), 200, time.Millisecond)
				m.WebsocketConnected(1)
				m.WebsocketConnected(-1)
				m.SessionsFunc(func() int { return i })
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			scrape(t, m)
		}
	})
	wg.Wait()
	_, fams := scrape(t, m)
	if got := counter(t, fams, "phigate_smtp_accepted_total", "action", "portal"); got != 1600 {
		t.Errorf("accepted = %v, want 1600", got)
	}
	if got := len(labelValues(fams, "phigate_http_request_duration_seconds", "route")); got != maxRoutes+1 {
		t.Errorf("%d route series, want %d", got, maxRoutes+1)
	}
	if got := gauge(t, fams, "phigate_websocket_connections"); got != 0 {
		t.Errorf("websockets = %v", got)
	}
}

func TestServeRefusesNonLoopback(t *testing.T) {
	m := New()
	ctx := t.Context()
	for _, addr := range []string{
		":0", "0.0.0.0:0", "[::]:0", "192.0.2.10:0", "8.8.8.8:9464",
		"10.0.0.1:0", "[2001:db8::1]:0", "[::ffff:192.0.2.1]:0", "no-port",
	} {
		ln, err := Serve(ctx, addr, false, m)
		if err == nil {
			ln.Close()
			t.Errorf("Serve(%q) accepted a non-loopback address", addr)
		}
	}
}

func TestServeAllowsNonLoopbackWhenAsked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := Serve(ctx, "0.0.0.0:0", true, New())
	if err != nil {
		t.Fatalf("Serve(0.0.0.0:0, allow): %v", err)
	}
	cancel()
	waitClosed(t, ln)
}

func TestServeLoopback(t *testing.T) {
	m := New()
	m.Lockout()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := Serve(ctx, "127.0.0.1:0", false, m)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "phigate_lockouts_total 1") {
		t.Fatalf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}
	for _, c := range []struct{ method, path string }{{"GET", "/"}, {"GET", "/debug/pprof/"}, {"POST", "/metrics"}} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("%s %s = 200, want an error", c.method, c.path)
		}
	}

	cancel()
	waitClosed(t, ln)
}

func TestServeLocalhostName(t *testing.T) {
	ips, err := net.LookupIP("localhost")
	if err != nil || len(ips) == 0 {
		t.Skip("localhost does not resolve here")
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			t.Skip("localhost resolves to a non-loopback address here")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := Serve(ctx, "localhost:0", false, New())
	if err != nil {
		t.Fatal(err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		t.Errorf("listening on %v", ip)
	}
	cancel()
	waitClosed(t, ln)
}

// waitClosed waits until nothing accepts connections on ln's address.
func waitClosed(t *testing.T, ln net.Listener) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("listener %s still open after ctx ended", ln.Addr())
}
