package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/phigate/phigate/alert"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/store"
)

// queryFrom reads an audit search from parameters: user (actor),
// action ("auth.*" for a prefix), message (object id of a message),
// object_type, object_id, ip, outcome, from/to (RFC 3339 or 2006-01-02),
// limit, before (seq, for paging back).
func queryFrom(v url.Values) audit.Query {
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

// auditQuery is the one reading of an audit search, for the page, its
// filter bar, the API and the export alike: a date that does not parse is
// refused (ignoring it would widen a search or an export), a date without
// a time is a day in org.time_zone ("to" includes that whole day), and
// "user" may be an address, searched as its account's id.
func (s *Server) auditQuery(ctx context.Context, vals url.Values) (audit.Query, error) {
	for _, k := range []string{"from", "to"} {
		if x := vals.Get(k); x != "" && parseWhen(x).IsZero() {
			oe := refused(http.StatusBadRequest, "bad_request", "From and to take dates (YYYY-MM-DD) or RFC 3339 times.", nil)
			oe.Field = k
			return audit.Query{}, oe
		}
	}
	q := queryFrom(vals)
	s.zoneDates(&q, vals)
	actor, problem := s.actorFilter(ctx, q.Actor)
	if problem != "" {
		oe := refused(http.StatusBadRequest, "bad_request", problem, nil)
		oe.Field = "user"
		return audit.Query{}, oe
	}
	q.Actor = actor
	return q, nil
}

type auditSearchIn struct {
	Query url.Values
}

type auditSearchOut struct {
	Entries []audit.Entry `json:"entries"`
	// asIDs is the search with the account as its id, for links: an
	// address (PHI) never goes into a URL.
	asIDs url.Values
	actor string
}

// opAuditSearch searches the trail, newest first; the search is itself
// audited (audit.search, with the query).
func (s *Server) opAuditSearch(r *http.Request, _ *viewer, in auditSearchIn) (auditSearchOut, error) {
	q, err := s.auditQuery(r.Context(), in.Query)
	if err != nil {
		return auditSearchOut{}, err
	}
	entries, err := s.Trail.Search(r.Context(), q)
	if err != nil {
		return auditSearchOut{}, err
	}
	ids := url.Values{}
	for k, v := range in.Query {
		if k != "verify" {
			ids[k] = v
		}
	}
	if q.Actor != "" {
		ids.Set("user", q.Actor)
	}
	s.audit(r, "audit.search", "audit", "", "ok", map[string]string{"query": ids.Encode()})
	return auditSearchOut{Entries: entries, asIDs: ids, actor: q.Actor}, nil
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opAuditSearch(r, v, auditSearchIn{Query: r.URL.Query()})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

// export streams the matching entries as CSV or JSON; the export is itself
// in the trail, before any byte leaves.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, v *viewer) {
	q, err := s.auditQuery(r.Context(), r.URL.Query())
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "csv" && format != "json" {
		format = "json"
	}
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

type verifyOut struct {
	OK          bool   `json:"ok"`
	Checked     int64  `json:"checked"`
	FirstBroken *int64 `json:"first_broken,omitempty"`
	Reason      string `json:"reason,omitempty"`
	broken      *audit.BrokenError
}

// opAuditVerify checks the whole chain (verifyTrail); a broken chain is a
// result, not an error.
func (s *Server) opAuditVerify(r *http.Request, _ *viewer, _ struct{}) (verifyOut, error) {
	n, err := s.verifyTrail(r)
	var be *audit.BrokenError
	if errors.As(err, &be) {
		seq := be.Seq
		return verifyOut{Checked: n, FirstBroken: &seq, Reason: be.Reason, broken: be}, nil
	}
	if err != nil {
		return verifyOut{}, err
	}
	return verifyOut{OK: true, Checked: n}, nil
}

func (s *Server) apiAuditVerify(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opAuditVerify(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
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

type historyIn struct{ ID string }

type historyOut struct {
	Message string        `json:"message"`
	History []audit.Entry `json:"history"`
}

// opHistory is one message's proof of delivery (messageHistory); 404 for
// a message the viewer may not see, as for one that does not exist.
func (s *Server) opHistory(r *http.Request, v *viewer, in historyIn) (historyOut, error) {
	entries, err := s.messageHistory(r, v, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return historyOut{}, refused(http.StatusNotFound, "not_found", "This message does not exist, or you did not send it.", err)
	}
	return historyOut{Message: in.ID, History: entries}, err
}

func (s *Server) apiMessageHistory(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opHistory(r, v, historyIn{ID: r.PathValue("id")})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

type alertsOut struct {
	Alerts []alert.Alert `json:"alerts"`
}

// opAlerts lists the recent security alerts.
func (s *Server) opAlerts(_ *http.Request, _ *viewer, _ struct{}) (alertsOut, error) {
	return alertsOut{Alerts: s.recentAlerts()}, nil
}

func (s *Server) apiAlerts(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opAlerts(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
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
	s.renderAudit(w, r, v, r.URL.Query())
}

// renderAudit shows the trail for a search: the page's own URL, or what
// the filter bar posted (auditSearchSubmit).
func (s *Server) renderAudit(w http.ResponseWriter, r *http.Request, v *viewer, vals url.Values) {
	d := s.data("Audit trail")
	rp := &reviewPage{Query: map[string]string{}, Actions: audit.ActionChoices()}
	for _, k := range []string{"user", "action", "message", "ip", "from", "to", "outcome"} {
		rp.Query[k] = vals.Get(k)
	}
	d.Review = rp
	if vals.Get("verify") == "1" {
		out, err := s.opAuditVerify(r, v, struct{}{})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		rp.Verify, rp.Checked, rp.Broken = true, out.Checked, out.broken
	}
	out, err := s.opAuditSearch(r, v, auditSearchIn{Query: vals})
	if err != nil {
		s.pageRefused(w, r, err, d, func(status int, d pageData) { s.render(w, r, status, "admin_audit.html", d) })
		return
	}
	nm := s.namer(r.Context())
	rp.Entries, rp.Rows, rp.Export = out.Entries, nm.rows(out.Entries, true), out.asIDs.Encode()
	if a := nm.user(out.actor); a != "" {
		rp.Query["user"] = a // the address, not the id it was turned into
	}
	s.render(w, r, http.StatusOK, "admin_audit.html", d)
}

func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, _ := s.opAlerts(r, v, struct{}{}) // never fails
	d := s.data("Security alerts")
	d.Review = &reviewPage{Alerts: out.Alerts}
	s.render(w, r, http.StatusOK, "admin_alerts.html", d)
}

func (s *Server) historyPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opHistory(r, v, historyIn{ID: r.PathValue("id")})
	if err != nil {
		s.pageRefused(w, r, err, s.data("Message not found"), func(status int, d pageData) { s.render(w, r, status, "error.html", d) })
		return
	}
	d := s.data("Message history")
	d.ID, d.Review = out.Message, &reviewPage{Entries: out.History, Rows: s.namer(r.Context()).rows(out.History, false)}
	s.render(w, r, http.StatusOK, "history.html", d)
}
