package portal

import (
	"net/http"
	"time"

	"github.com/phigate/phigate/web"
)

// disposedError: the viewer's own message was disposed of under the
// retention policy (issue 14.4). The person is told so in plain words;
// callers that only know errNoMessage treat it as that.
type disposedError struct{ at time.Time }

func (disposedError) Error() string { return "message disposed of under the retention policy" }

func (disposedError) Is(target error) bool { return target == errNoMessage }

// disposed answers a request for a disposed message: 410 Gone, with what
// happened and what to do.
func (s *Server) disposed(w http.ResponseWriter, r *http.Request, id, what string, e disposedError) {
	s.audit(r, "message."+what, "message", id, "denied", map[string]string{"why": "disposed"})
	when := web.When(e.at, s.Org.Location())
	if isAPI(r) {
		writeJSONError(w, http.StatusGone, "disposed", "this message was deleted on "+when+
			" under the organisation's retention policy and can no longer be shown")
		return
	}
	d := s.data("Message deleted")
	d.SignedIn = true
	org := s.Org.Name
	if org == "" {
		org = "your care provider"
	}
	d.Error = "This message was deleted on " + when + ", at the end of the time " + org +
		" keeps messages, so it can no longer be shown. If you still need it, contact " + s.Org.Contact + "."
	s.render(w, r, http.StatusGone, "error.html", d)
}
