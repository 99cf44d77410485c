package portal

import (
	"errors"
	"net/http"
	"strings"

	"github.com/phigate/phigate/internal/redisconn"
)

// Redis outages (issue 9.4). Sessions, lock-out counters and live events
// live in Redis when it is configured. While it is down or hung the portal
// fails closed, without harm: 503 with a clear page or JSON error, the
// session cookie kept (the sessions are still in Redis and come back with
// it), nothing written to the audit trail as a failed sign-in. The outage
// itself is logged and audited once, by the gateway's Redis guard.

// retryAfterSeconds is what a 503 asks clients to wait; the guard probes
// Redis every second, so service usually resumes well within it.
const retryAfterSeconds = "30"

// storeUnavailable reports whether err means the session or counter store
// did not answer (as opposed to "no such session" or a refusal).
func storeUnavailable(err error) bool { return errors.Is(err, redisconn.ErrUnavailable) }

// unavailableFor answers 503 if err means the store did not answer, and
// reports whether it did. Nothing is logged per request (the guard logs the
// outage once) and no cookie is touched.
func (s *Server) unavailableFor(w http.ResponseWriter, r *http.Request, err error) bool {
	if !storeUnavailable(err) {
		return false
	}
	s.serveUnavailable(w, r)
	return true
}

// serveUnavailable answers 503: JSON for the API, a page otherwise.
func (s *Server) serveUnavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", retryAfterSeconds)
	if isAPI(r) {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "unavailable",
			Message: "sign-in and sessions are briefly unavailable; you are still signed in: try again shortly", Ref: info(r).cid})
		return
	}
	d := s.data("Briefly unavailable")
	d.Error = "Signing in and opening messages are briefly unavailable. If you were signed in, you still are: " +
		"please try again in a minute. If it keeps happening, contact " + s.Org.Contact + " and mention reference " + info(r).cid + "."
	s.render(w, r, http.StatusServiceUnavailable, "error.html", d)
}

// whileStoreDown answers every request but static files with 503 at once
// while the gateway knows Redis is down (RedisDown), so no request waits
// on it and no half-done step (a claim spent, a password reset whose old
// sessions could not be ended) happens meanwhile.
func (s *Server) whileStoreDown(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.RedisDown != nil && s.RedisDown() && !strings.HasPrefix(r.URL.Path, "/static/") {
			s.serveUnavailable(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
