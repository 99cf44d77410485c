package portal

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/limiter"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/store"
)

// Unit tests of the portal's own pieces (the whole portal is tested end to
// end in package gateway).

// TestSecurityHeaders: every response, whatever its status, carries the
// transport, framing, sniffing, referrer, caching and CSP headers, and the
// CSP allows no inline script, no plugins and no framing by others.
func TestSecurityHeaders(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusNotFound, http.StatusInternalServerError} {
		rec := httptest.NewRecorder()
		securityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
		})).ServeHTTP(rec, httptest.NewRequest("GET", "/messages", nil))
		h := rec.Header()
		for name, want := range map[string]string{
			"Strict-Transport-Security":  "max-age=31536000",
			"X-Content-Type-Options":     "nosniff",
			"Referrer-Policy":            "no-referrer",
			"X-Frame-Options":            "DENY",
			"Cross-Origin-Opener-Policy": "same-origin",
			"Cache-Control":              "no-store",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("status %d: %s = %q, want %q", status, name, got, want)
			}
		}
		csp := map[string]string{}
		for _, d := range strings.Split(h.Get("Content-Security-Policy"), ";") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), " ")
			csp[name] = val
		}
		for name, want := range map[string]string{
			"default-src": "'none'", "script-src": "'self'", "frame-ancestors": "'none'",
			"base-uri": "'none'", "form-action": "'self'",
		} {
			if csp[name] != want {
				t.Errorf("status %d: CSP %s = %q, want %q (CSP %q)", status, name, csp[name], want, h.Get("Content-Security-Policy"))
			}
		}
		if strings.Contains(h.Get("Content-Security-Policy"), "unsafe-") {
			t.Errorf("CSP allows unsafe sources: %q", h.Get("Content-Security-Policy"))
		}
	}
}

// TestClientIP: the address is the TCP peer's, never a client-supplied
// header (phigate terminates TLS itself; a forwarded-for header would let a
// client choose the address its failures are counted under).
func TestClientIP(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:51234":       "192.0.2.7",
		"[2001:db8::1]:443":     "2001:db8::1",
		"[::ffff:192.0.2.7]:80": "::ffff:192.0.2.7",
		"not-an-address":        "not-an-address",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", "203.0.113.9")
		r.Header.Set("X-Real-Ip", "203.0.113.9")
		if got := clientIP(r); got != want {
			t.Errorf("clientIP(%q) = %q, want %q", remote, got, want)
		}
	}
}

// TestIPKey: throttling counts one IPv4 address, or one IPv6 /64, under a
// pseudonym that does not show the address.
func TestIPKey(t *testing.T) {
	same := [][2]string{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},                       // IPv4-mapped is the IPv4 address
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"}, // one /64
	}
	for _, p := range same {
		if ipKey(p[0]) != ipKey(p[1]) {
			t.Errorf("ipKey(%s) != ipKey(%s): one client counted twice", p[0], p[1])
		}
	}
	different := [][2]string{
		{"192.0.2.7", "192.0.2.8"},
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.7", "2001:db8::c000:207"},
	}
	for _, p := range different {
		if ipKey(p[0]) == ipKey(p[1]) {
			t.Errorf("ipKey(%s) == ipKey(%s): two clients share a counter", p[0], p[1])
		}
	}
	for _, ip := range []string{"192.0.2.7", "2001:db8:1:2::1", "garbage"} {
		if k := ipKey(ip); k == "" || strings.Contains(k, ip) || strings.Contains(k, "2001") {
			t.Errorf("ipKey(%s) = %q shows the address", ip, k)
		}
	}
}

// TestAllows: the role check behind every route; PermNone (a route
// registered without a permission) refuses every role.
func TestAllows(t *testing.T) {
	roles := []string{store.RolePatient, store.RoleStaff, store.RoleAdmin, store.RoleSecurity, ""}
	want := map[Perm][]string{
		PermNone:       nil,
		PermPublic:     roles,
		PermSession:    roles,
		PermOwn:        roles,
		PermAdmin:      {store.RoleAdmin},
		PermBreakGlass: {store.RoleAdmin, store.RoleSecurity},
		PermReview:     {store.RoleAdmin, store.RoleSecurity},
	}
	for p, ok := range want {
		for _, role := range roles {
			allowed := false
			for _, r := range ok {
				allowed = allowed || r == role
			}
			if allows(p, role) != allowed {
				t.Errorf("allows(%s, %q) = %v, want %v", p, role, !allowed, allowed)
			}
		}
	}
}

// TestRouteWithoutPermissionIsClosed: a route registered with PermNone
// answers 403 without running its handler, and is listed in the route
// table as such.
func TestRouteWithoutPermissionIsClosed(t *testing.T) {
	s := &Server{Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	ran := false
	s.handle(mux, "GET /api/v1/forgotten", PermNone, func(http.ResponseWriter, *http.Request, *viewer) { ran = true })
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/forgotten", nil))
	if rec.Code != http.StatusForbidden || ran {
		t.Fatalf("PermNone route: status %d, handler ran %v", rec.Code, ran)
	}
	if rt := s.Routes(); len(rt) != 1 || rt[0] != (Route{Method: "GET", Pattern: "/api/v1/forgotten", Perm: PermNone}) {
		t.Fatalf("route table %+v", rt)
	}
}

// TestUnauthenticated: without a session, the API says 401 and why the
// session ended; a page signs the person out and sends them to the sign-in
// page with the reason.
func TestUnauthenticated(t *testing.T) {
	s := &Server{Log: slog.New(slog.DiscardHandler)}
	cases := []struct {
		err        error
		path       string
		status     int
		code       string
		location   string
		clearsSite bool
	}{
		{session.ErrNoSession, "/api/v1/messages", 401, "unauthenticated", "", false},
		{&session.EndedError{Reason: "idle"}, "/api/v1/messages", 401, "session_expired", "", false},
		{&session.EndedError{Reason: "replaced"}, "/messages", 303, "", "/login?ended=replaced", true},
		{session.ErrNoSession, "/messages", 303, "", "/login", true},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		s.unauthenticated(rec, httptest.NewRequest("GET", c.path, nil), c.err)
		if rec.Code != c.status {
			t.Errorf("%s %v: status %d, want %d", c.path, c.err, rec.Code, c.status)
		}
		if c.code != "" {
			var e apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != c.code || e.Reason != session.Reason(c.err) {
				t.Errorf("%s %v: body %s, want error %q reason %q", c.path, c.err, rec.Body, c.code, session.Reason(c.err))
			}
		}
		if got := rec.Header().Get("Location"); got != c.location {
			t.Errorf("%s %v: Location %q, want %q", c.path, c.err, got, c.location)
		}
		if got := rec.Header().Get("Clear-Site-Data") != ""; got != c.clearsSite {
			t.Errorf("%s %v: Clear-Site-Data sent %v, want %v", c.path, c.err, got, c.clearsSite)
		}
	}
}

// TestNeedSecondFactor: a session without its second factor is sent to the
// right step: entering a code when enrolled, enrolling otherwise.
func TestNeedSecondFactor(t *testing.T) {
	s := &Server{Log: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		enrolled bool
		path     string
		status   int
		want     string // API error code or redirect target
	}{
		{true, "/api/v1/messages", 403, "mfa_required"},
		{false, "/api/v1/messages", 403, "mfa_enrolment_required"},
		{true, "/messages", 303, "/login/2fa"},
		{false, "/messages", 303, "/account/2fa"},
	} {
		u := &store.User{}
		if c.enrolled {
			u.TOTPSecretEnc = []byte("sealed")
		}
		rec := httptest.NewRecorder()
		s.needSecondFactor(rec, httptest.NewRequest("GET", c.path, nil), &viewer{user: u})
		got := rec.Header().Get("Location")
		if c.status == 403 {
			var e apiError
			json.Unmarshal(rec.Body.Bytes(), &e)
			got = e.Error
		}
		if rec.Code != c.status || got != c.want {
			t.Errorf("enrolled %v, %s: %d %q, want %d %q", c.enrolled, c.path, rec.Code, got, c.status, c.want)
		}
	}
}

// TestRefusalReason: the audit trail's word for a refused sign-in.
func TestRefusalReason(t *testing.T) {
	for err, want := range map[error]string{
		&limiter.LockedError{Until: time.Now().Add(time.Hour)}:                      "locked",
		fmt.Errorf("sign-in: %w", &limiter.LockedError{Until: time.Now()}):          "locked",
		&limiter.ThrottledError{RetryAfter: time.Minute}:                            "throttled",
		fmt.Errorf("sign-in: %w", &limiter.ThrottledError{RetryAfter: time.Second}): "throttled",
		identity.ErrBadCredentials:                                                  "bad-credentials",
		errors.New("anything else"):                                                 "bad-credentials",
	} {
		if got := refusalReason(err); got != want {
			t.Errorf("refusalReason(%v) = %q, want %q", err, got, want)
		}
	}
}

// TestSignInRefusalTexts: what a refused person reads: the same words for
// a wrong password and an unknown address, how long a lock or throttle
// lasts (at least a minute, never "0 minutes"), whom to contact; a fault is
// not a refusal.
func TestSignInRefusalTexts(t *testing.T) {
	s := &Server{Org: config.Org{Contact: "help@clinic.example"}}
	cases := []struct {
		err  error
		want []string
	}{
		{identity.ErrBadCredentials, []string{"don't match"}},
		{fmt.Errorf("unknown account: %w", identity.ErrBadCredentials), []string{"don't match"}},
		{identity.ErrBadCode, []string{"code is not right"}},
		{identity.ErrNoTOTP, []string{"/account/2fa"}},
		{&limiter.LockedError{Until: time.Now().Add(10*time.Minute + 20*time.Second)}, []string{"locked for 10 more minutes", "help@clinic.example"}},
		{&limiter.LockedError{Until: time.Now().Add(5 * time.Second)}, []string{"locked for 1 more minute after"}},
		{&limiter.ThrottledError{RetryAfter: 90 * time.Second}, []string{"Wait 2 minutes and"}},
		{&limiter.ThrottledError{RetryAfter: 10 * time.Second}, []string{"Wait 1 minute and"}},
	}
	bad, _ := s.signInRefusal(identity.ErrBadCredentials)
	for _, c := range cases {
		got, ok := s.signInRefusal(c.err)
		if !ok {
			t.Errorf("%v: not taken for a refusal", c.err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: %q lacks %q", c.err, got, w)
			}
		}
		if errors.Is(c.err, identity.ErrBadCredentials) && got != bad {
			t.Errorf("%v: %q differs from the wrong-password text %q", c.err, got, bad)
		}
	}
	if got, ok := s.signInRefusal(errors.New("database is locked")); ok || got != "" {
		t.Errorf("a fault was taken for a refusal: %q", got)
	}
}
