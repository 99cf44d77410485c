package portal

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/limiter"
)

// busyFor answers 429 with Retry-After if err means no password-hash slot
// could be had in time (the client's share of the hash queue is full, or
// the wait ran out), or the account's other attempts in progress were not
// settled in time (issue 8.1), and reports whether it did. Such an
// attempt was never evaluated, so it is neither a wrong password nor a
// fault.
func (s *Server) busyFor(w http.ResponseWriter, r *http.Request, err error) bool {
	retry := time.Second // the account's attempts in progress settle in about a hash
	var busy *pcrypto.HashBusyError
	switch {
	case errors.As(err, &busy):
		retry = busy.RetryAfter
	case !errors.Is(err, limiter.ErrInFlight):
		return false
	}
	secs := int((retry + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	// DEBUG: a flood would otherwise write a line per refused request.
	s.Log.DebugContext(r.Context(), "password hashing busy", "route", r.Pattern, "ip", info(r).ip)
	const msg = "The service is handling many sign-ins right now. Your password was not checked: wait a moment and try again."
	if isAPI(r) {
		writeJSON(w, http.StatusTooManyRequests, apiError{Error: "busy", Message: msg, Ref: info(r).cid})
		return true
	}
	d := s.data("Please try again shortly")
	d.Error = msg
	s.render(w, r, http.StatusTooManyRequests, "error.html", d)
	return true
}
