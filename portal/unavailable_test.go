package portal

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/redisconn"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/web"
)

// A request whose session could not be loaded is answered by what the
// error means: the store did not answer (503, cookie kept), no such or an
// ended session (sign in again, cookie cleared), or another fault (500,
// cookie kept). While the store is known down, everything but static files
// is 503 at once.
func TestUnavailableKeepsTheCookie(t *testing.T) {
	s := &Server{Log: slog.New(slog.DiscardHandler), Org: config.Org{Contact: "privacy@clinic.example"}, tmpl: web.Templates()}
	var down atomic.Bool
	s.RedisDown = down.Load
	var loadErr error
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.unauthenticated(w, r, loadErr) })
	srv := httptest.NewTLSServer(s.withRequestContext(s.whileStoreDown(mux)))
	defer srv.Close()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	cleared := func(resp *http.Response) bool {
		for _, k := range resp.Cookies() {
			if k.Name == CookieName && k.MaxAge < 0 {
				return true
			}
		}
		return false
	}

	for _, c := range []struct {
		name    string
		err     error
		status  int
		cleared bool
	}{
		{"store unavailable", fmt.Errorf("session: %w", redisconn.ErrUnavailable), http.StatusServiceUnavailable, false},
		{"database fault", errors.New("store: disk I/O error"), http.StatusInternalServerError, false},
		{"no session", session.ErrNoSession, http.StatusSeeOther, true},
		{"ended", &session.EndedError{Reason: session.ReasonIdle}, http.StatusSeeOther, true},
	} {
		loadErr = c.err
		resp, body := get("/inbox")
		if resp.StatusCode != c.status || cleared(resp) != c.cleared {
			t.Errorf("%s, page: %d, cookie cleared %v; want %d, %v", c.name, resp.StatusCode, cleared(resp), c.status, c.cleared)
		}
		if c.status == http.StatusServiceUnavailable && (resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "briefly unavailable")) {
			t.Errorf("%s, page: Retry-After %q, body %s", c.name, resp.Header.Get("Retry-After"), body)
		}
		resp, body = get("/api/v1/messages")
		if c.status == http.StatusSeeOther {
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s, API: %d, want 401", c.name, resp.StatusCode)
			}
		} else if resp.StatusCode != c.status || len(resp.Cookies()) != 0 {
			t.Errorf("%s, API: %d %s, cookies %v", c.name, resp.StatusCode, body, resp.Cookies())
		}
		if c.status == http.StatusServiceUnavailable && !strings.Contains(body, `"error":"unavailable"`) {
			t.Errorf("%s, API body %s", c.name, body)
		}
	}

	// Known down: 503 before any handler runs; static files still served.
	loadErr = session.ErrNoSession
	down.Store(true)
	if resp, _ := get("/inbox"); resp.StatusCode != http.StatusServiceUnavailable || len(resp.Cookies()) != 0 {
		t.Errorf("while down: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if resp, _ := get("/static/portal.css"); resp.StatusCode == http.StatusServiceUnavailable {
		t.Error("static files refused while the store is down")
	}
	down.Store(false)
	if resp, _ := get("/inbox"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("back up: %d", resp.StatusCode)
	}
}
