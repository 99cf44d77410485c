package portal

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/phigate/phigate/alert"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/store"
)

// queryFrom reads an audit search from URL parameters: user (actor),
// action ("auth.*" for a prefix), message (object id of a message),
// object_type, object_id, ip, outcome, from/to (RFC 3339 or 2006-01-02),
// limit, before (seq, for paging back).
func queryFrom(r *http.Request) audit.Query {
	v := r.URL.Query()
	q := audit.Query{Actor: v.Get("user"), Action: v.Get("action"), ObjectType: v.Get("object_type"),
		ObjectID: v.Get("object_id"), IP: v.Get("ip"), Outcome: v.Get("outcome"), Newest: true}
	if m := v.Get("message"); m != "" {
		q.ObjectType, q.ObjectID = "message", m
	}
	q.From, q.To = parseWhen(v.Get("from")), parseWhen(v.Get("to"))
	q.Limit, _ = strconv.Atoi(v.Get("limit"))
	if q.Limit <= 0 {
		q.Limit = 200
	}
	q.Limit = min(q.Limit, 500)
	q.BeforeSeq, _ = strconv.ParseInt(v.Get("before"), 10, 64)
	return q
}

func parseWhen(s string) time.Time {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// badDates reports a from/to parameter that does not parse: silently
// ignoring it would widen a search or an export.
func badDates(r *http.Request) bool {
	for _, k := range []string{"from", "to"} {
		if s := r.URL.Query().Get(k); s != "" && parseWhen(s).IsZero() {
			return true
		}
	}
	return false
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request, v *viewer) {
	if badDates(r) {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "from and to take RFC 3339 times or YYYY-MM-DD dates")
		return
	}
	entries, err := s.Trail.Search(r.Context(), queryFrom(r))
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	s.audit(r, "audit.search", "audit", "", "ok", map[string]string{"query": r.URL.RawQuery})
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
}

// export streams the matching entries as CSV or JSON; the export is itself
// in the trail, before any byte leaves.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, v *viewer) {
	if badDates(r) {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "from and to take RFC 3339 times or YYYY-MM-DD dates")
		return
	}
	format := r.URL.Query().Get("format")
	if format != "csv" && format != "json" {
		format = "json"
	}
	q := queryFrom(r)
	q.Limit, q.Newest = 0, false
	if err := s.audit(r, "audit.export", "audit", "", "ok", map[string]string{"format": format, "query": r.URL.RawQuery}); err != nil {
		s.apiFail(w, r, err)
		return
	}
	ctype := map[string]string{"csv": "text/csv; charset=utf-8", "json": "application/json"}[format]
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="phigate-audit-%s.%s"`, s.now().UTC().Format("20060102T150405Z"), format))
	if err := s.Trail.Export(r.Context(), w, format, q); err != nil {
		s.Log.ErrorContext(r.Context(), "audit export", "err", err)
	}
}

// verifyTrail checks the whole chain; a failure is audited (and alerts the
// security officer).
func (s *Server) verifyTrail(r *http.Request) (int64, error) {
	n, err := s.Trail.Verify(r.Context())
	outcome, details := "ok", map[string]string{"checked": fmt.Sprint(n)}
	var be *audit.BrokenError
	if errors.As(err, &be) {
		outcome, details["first_broken"], details["reason"] = "failed", fmt.Sprint(be.Seq), be.Reason
	} else if err != nil {
		return n, err
	}
	objID := ""
	if be != nil {
		objID = fmt.Sprint(be.Seq)
	}
	s.audit(r, "audit.verify", "audit", objID, outcome, details)
	return n, err
}

func (s *Server) apiAuditVerify(w http.ResponseWriter, r *http.Request, v *viewer) {
	n, err := s.verifyTrail(r)
	var be *audit.BrokenError
	switch {
	case errors.As(err, &be):
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "checked": n, "first_broken": be.Seq, "reason": be.Reason})
	case err != nil:
		s.apiFail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "checked": n})
	}
}

// messageHistory is "proof of delivery": accepted, policy, notified,
// opened (when, from where), recalled or expired. The sender of the message
// may see it, and admins and security officers; for anyone else the message
// does not exist.
func (s *Server) messageHistory(r *http.Request, v *viewer, id string) ([]audit.Entry, error) {
	m, err := s.Store.GetMessage(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if m.SenderID != v.user.ID && v.user.Role != store.RoleAdmin && v.user.Role != store.RoleSecurity {
		return nil, store.ErrNotFound
	}
	s.audit(r, "message.history", "message", id, "ok", nil)
	all, err := s.Trail.History(r.Context(), "message", id)
	if err != nil || v.user.Role == store.RoleAdmin || v.user.Role == store.RoleSecurity {
		return all, err
	}
	// The sender sees proof of delivery, not the whole trail: no
	// break-glass reasons, no other accounts' refused attempts, no details.
	var out []audit.Entry
	for _, e := range all {
		if senderVisible[e.Action] && e.Outcome == "ok" {
			e.Details = nil
			out = append(out, e)
		}
	}
	return out, nil
}

var senderVisible = map[string]bool{"message.accept": true, "notice.send": true, "message.read": true,
	"message.attachment": true, "message.reply": true, "message.recall": true, "message.purge": true,
	"quarantine.approve": true, "quarantine.deny": true}

func (s *Server) apiMessageHistory(w http.ResponseWriter, r *http.Request, v *viewer) {
	entries, err := s.messageHistory(r, v, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such message")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"message": r.PathValue("id"), "history": entries})
}

func (s *Server) apiAlerts(w http.ResponseWriter, r *http.Request, v *viewer) {
	writeJSON(w, http.StatusOK, map[string]any{"alerts": s.recentAlerts()})
}

func (s *Server) recentAlerts() []alert.Alert {
	if s.Alerts == nil {
		return nil
	}
	return s.Alerts.Recent(200)
}

type reviewPage struct {
	Query   map[string]string
	Entries []audit.Entry
	Rows    []entryRow           // Entries in words (names.go)
	Actions []audit.ActionChoice // the filter bar's "what" list
	Problem string               // a filter that could not be used
	Alerts  []alert.Alert
	Checked int64
	Broken  *audit.BrokenError
	Verify  bool
	Export  string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Audit trail")
	rp := &reviewPage{Query: map[string]string{}}
	for _, k := range []string{"user", "action", "message", "ip", "from", "to", "outcome"} {
		rp.Query[k] = r.URL.Query().Get(k)
	}
	rp.Export = r.URL.RawQuery
	if r.URL.Query().Get("verify") == "1" {
		rp.Verify = true
		n, err := s.verifyTrail(r)
		rp.Checked = n
		if !errors.As(err, &rp.Broken) && err != nil {
			s.fail(w, r, err)
			return
		}
	}
	q := queryFrom(r)
	rp.Actions = audit.ActionChoices()
	s.zoneDates(&q, r.URL.Query())
	if q.Actor, rp.Problem = s.actorFilter(r.Context(), q.Actor); rp.Problem != "" {
		d.Review = rp
		s.render(w, r, http.StatusOK, "admin_audit.html", d)
		return
	}
	entries, err := s.Trail.Search(r.Context(), q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "audit.search", "audit", "", "ok", map[string]string{"query": r.URL.RawQuery})
	nm := s.namer(r.Context())
	rp.Entries, rp.Rows = entries, nm.rows(entries, true)
	if a := nm.user(q.Actor); a != "" {
		rp.Query["user"] = a // the address, not the id it was turned into
	}
	d.Review = rp
	s.render(w, r, http.StatusOK, "admin_audit.html", d)
}

func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Security alerts")
	d.Review = &reviewPage{Alerts: s.recentAlerts()}
	s.render(w, r, http.StatusOK, "admin_alerts.html", d)
}

func (s *Server) historyPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	entries, err := s.messageHistory(r, v, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		s.notFound(w, r)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Message history")
	d.ID, d.Review = r.PathValue("id"), &reviewPage{Entries: entries, Rows: s.namer(r.Context()).rows(entries, false)}
	s.render(w, r, http.StatusOK, "history.html", d)
}
