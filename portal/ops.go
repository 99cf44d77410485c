package portal

// One layer of operations under two faces (issue 13.11).
//
// Every action the portal offers both as a page and as a JSON API call is
// one operation: a method op<Name>(r, v, in) (out, error) that holds every
// check, the change, its audit entry and its log line. The page handler and
// the API handler around it only read their input (form or JSON) into the
// operation's typed input, call it, and answer in their own way: the page
// with a redirect (POST-redirect-GET) or its template, the API with JSON.
// A refusal is an *opError that both faces answer with the same status and
// the same plain words, so a rule added to an operation holds in both.
// See /work/notes/ops-pattern.md and TestFacesAreThin (ops_test.go).

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// opError is a refusal an operation decided: the person asked for
// something that cannot be done, and can be told why. Faults (a database
// that did not answer) stay plain errors: both faces answer those with the
// generic message and the correlation id, and log the cause.
type opError struct {
	Status int    // the HTTP status both faces answer with
	Code   string // the API's error code (docs/api.md)
	Msg    string // plain words for the person: what happened, what to do
	Field  string // the form field it is about ("" none): the page marks it
	Line   int    // the line of Field it is about (policy text), 0 none
	// RetryAfter, when set, is sent as Retry-After by both faces.
	RetryAfter time.Duration
	// Extra are further members of the API's error object (the policy
	// editor's "problems").
	Extra map[string]any
	// Cause is the internal error behind the refusal, logged with the
	// request's correlation id, never shown.
	Cause error
}

func (e *opError) Error() string { return e.Code + ": " + e.Msg }
func (e *opError) Unwrap() error { return e.Cause }

// refused builds a refusal; cause may be nil.
func refused(status int, code, msg string, cause error) *opError {
	return &opError{Status: status, Code: code, Msg: msg, Cause: cause}
}

// asRefusal returns the refusal in err, or nil for a fault.
func asRefusal(err error) *opError {
	var oe *opError
	if errors.As(err, &oe) {
		return oe
	}
	return nil
}

// logRefusal notes a refusal with its internal cause; the correlation id
// comes with the request's context.
func (s *Server) logRefusal(r *http.Request, oe *opError) {
	s.Log.DebugContext(r.Context(), "request refused", "route", r.Pattern, "status", oe.Status, "code", oe.Code,
		"cause", oe.Cause, "ip", info(r).ip)
}

func retryAfter(w http.ResponseWriter, oe *opError) {
	if oe.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((oe.RetryAfter+time.Second-1)/time.Second)))
	}
}

// apiAnswer is the API face's one ending: out as JSON with status, or the
// refusal as {"error", "message", ...} with its status, or a fault.
func (s *Server) apiAnswer(w http.ResponseWriter, r *http.Request, status int, out any, err error) {
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	if out == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, out)
}

// apiError answers an operation's error in JSON.
func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	oe := asRefusal(err)
	if oe == nil {
		s.apiFail(w, r, err)
		return
	}
	s.logRefusal(r, oe)
	retryAfter(w, oe)
	body := map[string]any{"error": oe.Code, "message": oe.Msg}
	if oe.Field != "" {
		body["field"] = oe.Field
	}
	if oe.Line > 0 {
		body["line"] = oe.Line
	}
	for k, v := range oe.Extra {
		body[k] = v
	}
	writeJSON(w, oe.Status, body)
}

// pageRefused is the page face's one error path: a refusal shows the page
// again through reshow with the status, the words, the field to mark and
// the person's own input (d.Form), so nothing typed is lost; a fault gets
// the generic error page with the correlation id.
func (s *Server) pageRefused(w http.ResponseWriter, r *http.Request, err error, d pageData, reshow func(status int, d pageData)) {
	oe := asRefusal(err)
	if oe == nil {
		s.fail(w, r, err)
		return
	}
	s.logRefusal(r, oe)
	retryAfter(w, oe)
	d.Error, d.Field, d.Line = oe.Msg, oe.Field, oe.Line
	if d.Form == nil {
		d.Form = keptInput(r.PostForm)
	}
	reshow(oe.Status, d)
}

// secretFields are never sent back to a page, whatever its template does.
var secretFields = map[string]bool{"password": true, "confirm": true, "current": true, "code": true,
	"passphrase": true, "escrow_key": true, "pending": true}

// keptInput is what a refused form may show again: everything but secrets.
func keptInput(form url.Values) url.Values {
	out := url.Values{}
	for k, v := range form {
		if !secretFields[k] {
			out[k] = v
		}
	}
	return out
}

// seeOther ends a page's successful POST with a redirect to a page that
// can be reloaded safely (POST-redirect-GET); done names the notice the
// target shows (see doneNotice).
func seeOther(w http.ResponseWriter, r *http.Request, target, done string) {
	if done != "" {
		u, err := url.Parse(target)
		if err == nil {
			q := u.Query()
			q.Set("done", done)
			u.RawQuery = q.Encode()
			target = u.String()
		}
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// doneNotice is the notice a page shows after seeOther: only the words of
// notices, so the query cannot put text of its own on the page.
func doneNotice(r *http.Request, notices map[string]string) string {
	return notices[r.URL.Query().Get("done")]
}
