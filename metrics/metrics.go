// Package metrics exposes phigate's operational metrics in the Prometheus
// text format.
//
// Every metric lives on a registry owned by one *M (never the global
// prometheus registry), so tests and several gateways in one process do not
// collide.
//
// Invariant 1 (no PHI outside ciphertext) covers metrics labels. So every
// label value here comes from a small fixed set: each method normalises its
// label input, and anything it does not recognise becomes "other". The one
// open-ended label, the HTTP route, accepts only strings shaped like a
// net/http mux pattern ("GET /messages/{id}"), never a request path. Anything
// holding an '@', a query, a percent escape, upper case, a long number or a
// hex id becomes "other", and the number of distinct routes is capped. Call
// AllowRoutes with the mux's patterns to accept only those exact strings.
//
// A nil *M is valid: every method is then a no-op, so callers need no nil
// checks when metrics are off.
package metrics

import (
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Other is the label value that every unrecognised input maps to.
const Other = "other"

// Fixed label value sets (unexported so nothing can widen them at run time).
var (
	// smtpActions are the per-recipient outcomes of an accepted message.
	smtpActions = []string{"portal", "relay", "pgp", "quarantine"}
	// smtpRefusalReasons are the reasons an SMTP transaction is refused.
	smtpRefusalReasons = []string{"auth", "tls", "sender", "recipients", "size", "line", "policy", "fault"}
	// smtpStages are the stages SMTPDuration times.
	smtpStages = []string{"data", "rcpt", "auth", "session"}
	// noticeKinds are the kinds of notification the dispatcher sends.
	noticeKinds = []string{"new-message", "password-reset", "security-alert", "push"}
	// signInFactors are the factors a sign-in can fail on.
	signInFactors = []string{"password", "second-factor"}
)

// Histogram buckets, in seconds.
var (
	// latencyBuckets spans 1 ms .. 10 s (SMTP accept and HTTP requests).
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// auditBuckets spans 100 µs .. 1 s (one append to the audit chain).
	auditBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// maxRoutes caps the distinct values of the route label. Routes after the
// cap are counted under "other", so a bug that passes request paths cannot
// grow the series without bound.
const maxRoutes = 256

// M holds every phigate metric on its own registry.
type M struct {
	reg *prometheus.Registry

	smtpAccepted *prometheus.CounterVec   // action
	smtpRefused  *prometheus.CounterVec   // reason
	smtpDuration *prometheus.HistogramVec // stage

	noticesSent   *prometheus.CounterVec // kind
	noticesFailed *prometheus.CounterVec // kind, permanent
	outboxDepth   prometheus.Gauge
	outboxOldest  prometheus.Gauge

	signinFailures *prometheus.CounterVec // factor
	lockouts       prometheus.Counter
	httpDuration   *prometheus.HistogramVec // route, code
	websockets     prometheus.Gauge

	auditWrite prometheus.Histogram

	sessionsOnce sync.Once
	sessionsFn   atomic.Pointer[func() int]

	routeMu    sync.Mutex
	routesSeen sync.Map // string -> struct{}: route labels in use
	routeCount int
	allowed    atomic.Pointer[map[string]struct{}] // nil: shape check only
}

// New returns an M with every metric registered on a fresh registry, plus
// the Go runtime and process collectors. Counters with fixed label sets
// start at zero for every label value, so dashboards and alerts see the
// series before the first event.
func New() *M {
	m := &M{reg: prometheus.NewRegistry()}

	m.smtpAccepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "phigate_smtp_accepted_total",
		Help: "Recipients accepted over SMTP, by the action the policy chose.",
	}, []string{"action"})
	m.smtpRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "phigate_smtp_refused_total",
		Help: "SMTP commands or messages refused, by reason.",
	}, []string{"reason"})
	m.smtpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "phigate_smtp_duration_seconds",
		Help:    "SMTP latency by stage (data: end of DATA to the reply).",
		Buckets: latencyBuckets,
	}, []string{"stage"})

	m.noticesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "phigate_notices_sent_total",
		Help: "Notifications sent from the outbox, by kind.",
	}, []string{"kind"})
	m.noticesFailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "phigate_notices_failed_total",
		Help: "Notification send attempts that failed, by kind and whether the failure was permanent.",
	}, []string{"kind", "permanent"})
	m.outboxDepth = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "phigate_outbox_depth",
		Help: "Notifications waiting in the outbox.",
	})
	m.outboxOldest = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "phigate_outbox_oldest_seconds",
		Help: "Age of the oldest unsent notification in the outbox (0 when empty).",
	})

	m.signinFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "phigate_signin_failures_total",
		Help: "Failed portal sign-ins, by the factor that failed.",
	}, []string{"factor"})
	m.lockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "phigate_lockouts_total",
		Help: "Accounts or clients locked out after repeated failures.",
	})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "phigate_http_request_duration_seconds",
		Help:    "Portal HTTP request latency, by mux route pattern and status class.",
		Buckets: latencyBuckets,
	}, []string{"route", "code"})
	m.websockets = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "phigate_websocket_connections",
		Help: "Open live-event websocket connections on this node.",
	})

	m.auditWrite = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "phigate_audit_write_seconds",
		Help:    "Latency of one audit trail append.",
		Buckets: auditBuckets,
	})

	m.reg.MustRegister(
		m.smtpAccepted, m.smtpRefused, m.smtpDuration,
		m.noticesSent, m.noticesFailed, m.outboxDepth, m.outboxOldest,
		m.signinFailures, m.lockouts, m.httpDuration, m.websockets,
		m.auditWrite,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	for _, v := range append(smtpActions, Other) {
		m.smtpAccepted.WithLabelValues(v)
	}
	for _, v := range append(smtpRefusalReasons, Other) {
		m.smtpRefused.WithLabelValues(v)
	}
	for _, v := range append(noticeKinds, Other) {
		m.noticesSent.WithLabelValues(v)
		m.noticesFailed.WithLabelValues(v, "false")
		m.noticesFailed.WithLabelValues(v, "true")
	}
	for _, v := range append(signInFactors, Other) {
		m.signinFailures.WithLabelValues(v)
	}
	return m
}

// on reports whether m can record: false for a nil or zero M.
func (m *M) on() bool { return m != nil && m.reg != nil }

// Registry returns the registry behind m (nil for a nil M), for tests or
// to add collectors.
func (m *M) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler returns the Prometheus exposition handler for m's registry. For a
// nil M it answers 404.
func (m *M) Handler() http.Handler {
	if !m.on() {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// SMTPAccepted counts one recipient accepted with action portal, relay, pgp
// or quarantine; anything else counts as "other".
func (m *M) SMTPAccepted(action string) {
	if !m.on() {
		return
	}
	m.smtpAccepted.WithLabelValues(oneOf(action, smtpActions)).Inc()
}

// SMTPRefused counts one refusal. reason is one of auth, tls, sender,
// recipients, size, line, policy, fault; anything else counts as "other".
func (m *M) SMTPRefused(reason string) {
	if !m.on() {
		return
	}
	m.smtpRefused.WithLabelValues(oneOf(reason, smtpRefusalReasons)).Inc()
}

// SMTPDuration observes the latency of one SMTP stage ("data": from the end
// of the DATA body to the reply). Unknown stages count as "other".
func (m *M) SMTPDuration(stage string, d time.Duration) {
	if !m.on() {
		return
	}
	m.smtpDuration.WithLabelValues(oneOf(stage, smtpStages)).Observe(seconds(d))
}

// NoticeSent counts one notification sent. kind is new-message,
// password-reset or security-alert; anything else counts as "other".
func (m *M) NoticeSent(kind string) {
	if !m.on() {
		return
	}
	m.noticesSent.WithLabelValues(oneOf(kind, noticeKinds)).Inc()
}

// NoticeFailed counts one failed notification attempt. permanent is true
// when the notice will not be retried.
func (m *M) NoticeFailed(kind string, permanent bool) {
	if !m.on() {
		return
	}
	p := "false"
	if permanent {
		p = "true"
	}
	m.noticesFailed.WithLabelValues(oneOf(kind, noticeKinds), p).Inc()
}

// SetQueue sets the outbox depth and the age of the oldest unsent notice.
// Negative values are stored as 0.
func (m *M) SetQueue(depth int, oldest time.Duration) {
	if !m.on() {
		return
	}
	m.outboxDepth.Set(float64(max(depth, 0)))
	m.outboxOldest.Set(seconds(oldest))
}

// SignInFailure counts one failed sign-in on factor "password" or
// "second-factor"; anything else counts as "other".
func (m *M) SignInFailure(factor string) {
	if !m.on() {
		return
	}
	m.signinFailures.WithLabelValues(oneOf(factor, signInFactors)).Inc()
}

// Lockout counts one lock-out.
func (m *M) Lockout() {
	if !m.on() {
		return
	}
	m.lockouts.Inc()
}

// HTTPDuration observes one portal request. route must be the mux pattern
// that matched (r.Pattern, e.g. "GET /messages/{id}"), never r.URL.Path:
// anything that does not look like a pattern, or is not in the AllowRoutes
// list when one is set, counts as "other". status is the HTTP status; 0
// means none was written, which net/http sends as 200. The code label is
// the class: "1xx".."5xx", or "other".
func (m *M) HTTPDuration(route string, status int, d time.Duration) {
	if !m.on() {
		return
	}
	m.httpDuration.WithLabelValues(m.routeLabel(route), statusClass(status)).Observe(seconds(d))
}

// AllowRoutes restricts the route label of HTTPDuration to exactly these
// mux patterns; other routes count as "other". Patterns that fail the shape
// check are dropped. Calling it again replaces the list; with no patterns
// only the shape check applies.
func (m *M) AllowRoutes(patterns ...string) {
	if !m.on() {
		return
	}
	if len(patterns) == 0 {
		m.allowed.Store(nil)
		return
	}
	set := make(map[string]struct{}, len(patterns))
	for _, p := range patterns {
		if routeShapeOK(p) {
			set[p] = struct{}{}
		}
	}
	m.allowed.Store(&set)
}

// WebsocketConnected adds delta (+1 on connect, -1 on close) to the open
// websocket gauge.
func (m *M) WebsocketConnected(delta int) {
	if !m.on() {
		return
	}
	m.websockets.Add(float64(delta))
}

// SessionsFunc makes phigate_sessions_active report f() at every scrape, so
// the gauge reflects the session store (Redis or memory) rather than this
// node. f runs on the scrape path: keep it fast and bounded (a cached count
// or a short-timeout query). A later call replaces f. If f panics, the gauge
// reads NaN for that scrape.
func (m *M) SessionsFunc(f func() int) {
	if !m.on() || f == nil {
		return
	}
	m.sessionsFn.Store(&f)
	m.sessionsOnce.Do(func() {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "phigate_sessions_active",
			Help: "Active portal sessions in the session store.",
		}, m.sessions))
	})
}

func (m *M) sessions() (v float64) {
	fp := m.sessionsFn.Load()
	if fp == nil {
		return 0
	}
	defer func() {
		if recover() != nil {
			v = math.NaN()
		}
	}()
	return float64((*fp)())
}

// AuditWrite observes the latency of one audit trail append.
func (m *M) AuditWrite(d time.Duration) {
	if !m.on() {
		return
	}
	m.auditWrite.Observe(seconds(d))
}

// seconds converts d to seconds, clamping negatives to 0.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

// oneOf returns the member of set equal to v ignoring ASCII case, or Other.
// It always returns a string from set (or Other), never v itself.
func oneOf(v string, set []string) string {
	for _, s := range set {
		if strings.EqualFold(v, s) {
			return s
		}
	}
	return Other
}

// statusClass maps an HTTP status to "1xx".."5xx"; 0 (nothing written)
// is 200. Anything else is "other".
func statusClass(status int) string {
	if status == 0 {
		status = http.StatusOK
	}
	switch status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		if status <= 599 {
			return "5xx"
		}
	}
	return Other
}

// routeLabel returns route if it may be a label value, else Other.
func (m *M) routeLabel(route string) string {
	if allowed := m.allowed.Load(); allowed != nil {
		if _, ok := (*allowed)[route]; !ok {
			return Other
		}
	} else if !routeShapeOK(route) {
		return Other
	}
	if _, ok := m.routesSeen.Load(route); ok {
		return route
	}
	m.routeMu.Lock()
	defer m.routeMu.Unlock()
	if _, ok := m.routesSeen.Load(route); ok {
		return route
	}
	if m.routeCount >= maxRoutes {
		return Other
	}
	route = strings.Clone(route) // keep no reference into a caller's buffer
	m.routesSeen.Store(route, struct{}{})
	m.routeCount++
	return route
}

// httpMethods are the methods a route pattern may start with.
var httpMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// routeShapeOK reports whether route looks like a net/http mux pattern of
// this gateway: an optional method and one space, then an absolute path
// (no host) whose segments are either wildcards ({id}, {path...}, {$}) or
// short lower-case literals (letters, at most 3 digits, '-', '_', '.').
// That shape excludes request paths with ids or tokens in them, addresses,
// names and queries.
func routeShapeOK(route string) bool {
	if len(route) == 0 || len(route) > 128 {
		return false
	}
	path := route
	if method, rest, ok := strings.Cut(route, " "); ok {
		known := false
		for _, hm := range httpMethods {
			if method == hm {
				known = true
				break
			}
		}
		if !known {
			return false
		}
		path = rest
	}
	if !strings.HasPrefix(path, "/") {
		return false
	}
	segs := strings.Split(path[1:], "/")
	if len(segs) > 12 {
		return false
	}
	for i, seg := range segs {
		switch {
		case seg == "":
			// Only a trailing slash ("/static/") or the root ("/").
			if i != len(segs)-1 {
				return false
			}
		case seg[0] == '{':
			if !wildcardOK(seg, i == len(segs)-1) {
				return false
			}
		default:
			if !literalOK(seg) {
				return false
			}
		}
	}
	return true
}

// wildcardOK checks "{name}", and in the last segment also "{name...}" and
// "{$}".
func wildcardOK(seg string, last bool) bool {
	if len(seg) < 3 || seg[len(seg)-1] != '}' {
		return false
	}
	name := seg[1 : len(seg)-1]
	if name == "$" {
		return last
	}
	if n, ok := strings.CutSuffix(name, "..."); ok {
		if !last {
			return false
		}
		name = n
	}
	if len(name) == 0 || len(name) > 24 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// literalOK checks one literal path segment: 1..32 bytes of a-z, 0-9, '-',
// '_', '.', with at least one letter, at most 3 digits, no "..", and not
// hex-like (5 or more hex digits, one of them a decimal digit, and no other
// letters). So "v1" and "2fa" pass, but numeric ids, hex ids (even cut
// short), UUIDs and tokens do not.
func literalOK(seg string) bool {
	if len(seg) > 32 || strings.Contains(seg, "..") {
		return false
	}
	letters, digits, nonHex := 0, 0, 0
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= 'a' && c <= 'z':
			letters++
			if c > 'f' {
				nonHex++
			}
		case c >= '0' && c <= '9':
			digits++
		case c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	hexLike := nonHex == 0 && digits > 0 && letters+digits >= 5
	return letters > 0 && digits <= 3 && !hexLike
}
