package portal

import (
	"errors"
	"fmt"
	"testing"

	"github.com/phigate/phigate/internal/redisconn"
	"github.com/phigate/phigate/session"
)

// An open page is told its session ended (and wipes itself) only when the
// session is known to be over; a store that did not answer or failed
// (Redis down or overloaded: a pool timeout, say) closes the websocket with
// "try again later" instead, and the page stays.
func TestWebsocketEndsOnlyEndedSessions(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"ended", fmt.Errorf("load: %w", &session.EndedError{Reason: session.ReasonIdle}), "idle"},
		{"no such session", session.ErrNoSession, "user"},
		{"store unavailable", fmt.Errorf("session: %w", redisconn.ErrUnavailable), ""},
		{"store fault", errors.New("redis: connection pool timeout"), ""},
	} {
		if got := endedReason(c.err); got != c.want {
			t.Errorf("%s: endedReason = %q, want %q", c.name, got, c.want)
		}
	}
}
