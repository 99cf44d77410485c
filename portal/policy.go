package portal

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/store"
)

type policyJSON struct {
	Version   int64     `json:"version"`
	Author    string    `json:"author"`
	CreatedAt time.Time `json:"created_at"`
	Note      string    `json:"note"`
	Body      string    `json:"body,omitempty"`
	// AuthorEmail is the author in words: an address (issue 13.4).
	AuthorEmail string `json:"author_email,omitempty"`
}

func toPolicyJSON(p *store.PolicyVersion, body bool) policyJSON {
	j := policyJSON{Version: p.ID, Author: p.AuthorID, CreatedAt: p.CreatedAt, Note: p.Note}
	if body {
		j.Body = p.Body
	}
	return j
}

func (s *Server) apiPolicy(w http.ResponseWriter, r *http.Request, v *viewer) {
	p, err := s.Store.LatestPolicyVersion(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPolicyJSON(p, true))
}

// applyPolicy validates and activates a new version; the error lines name
// the rule's line.
func (s *Server) applyPolicy(r *http.Request, v *viewer, body, note string) (int64, error) {
	id, err := s.PolicyVersions.Apply(r.Context(), v.user.ID, body, note)
	if err == nil {
		s.Log.WarnContext(r.Context(), "policy changed", "by", v.user.ID, "version", id, "ip", info(r).ip)
		s.audit(r, "policy.apply", "policy", fmt.Sprint(id), "ok", map[string]string{"note": note})
	}
	return id, err
}

func (s *Server) apiPolicyApply(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Body string `json:"body"`
		Note string `json:"note"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	id, err := s.applyPolicy(r, v, req.Body, req.Note)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_policy", "message": "the policy was not applied",
			"problems": strings.Split(err.Error(), "\n")})
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"version": id})
}

func (s *Server) apiPolicyVersions(w http.ResponseWriter, r *http.Request, v *viewer) {
	list, err := s.Store.ListPolicyVersions(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	out := make([]policyJSON, len(list))
	for i := range list {
		out[i] = toPolicyJSON(&list[i], false)
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": out})
}

func (s *Server) apiPolicyDiff(w http.ResponseWriter, r *http.Request, v *viewer) {
	a, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
	b, _ := strconv.ParseInt(r.URL.Query().Get("to"), 10, 64)
	d, err := s.PolicyVersions.Diff(r.Context(), a, b)
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such version")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"diff": d})
}

func (s *Server) apiPolicyRollback(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Version int64 `json:"version"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	id, err := s.PolicyVersions.Rollback(r.Context(), v.user.ID, req.Version)
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "not_found", "no such version")
		return
	}
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	s.Log.WarnContext(r.Context(), "policy rolled back", "by", v.user.ID, "to", req.Version, "version", id)
	s.audit(r, "policy.rollback", "policy", fmt.Sprint(id), "ok", map[string]string{"to": fmt.Sprint(req.Version)})
	writeJSON(w, http.StatusOK, map[string]int64{"version": id})
}

func (s *Server) apiPolicyExplain(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		From    string   `json:"from"`
		To      []string `json:"to"`
		Message string   `json:"message"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	out, err := s.Intake.Explain(r.Context(), req.From, req.To, []byte(req.Message))
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"recipients": out})
}

func (s *Server) apiQuarantine(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opListQuarantine(r, v, listQuarantineIn{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

func (s *Server) apiQuarantineDecide(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := decideIn{ID: r.PathValue("id"), Action: r.PathValue("action")}
	if r.ContentLength != 0 && !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opDecideQuarantine(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

type policyPage struct {
	Active   policyJSON
	Versions []policyJSON
	Explain  []intake.Explanation
	// Lines are the refused text around its first problem (policyform.go).
	Lines []policyLine
}

func (s *Server) renderPolicy(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	ctx := r.Context()
	p, err := s.Store.LatestPolicyVersion(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.Store.ListPolicyVersions(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Policy == nil {
		d.Policy = &policyPage{}
	}
	d.Policy.Active = toPolicyJSON(p, true)
	for i := len(list) - 1; i >= 0; i-- {
		d.Policy.Versions = append(d.Policy.Versions, toPolicyJSON(&list[i], false))
	}
	s.authorNames(ctx, d.Policy.Versions)
	if d.Form.Has("body") {
		d.Policy.Lines = aroundLine(d.Form.Get("body"), d.Line)
	}
	s.render(w, r, status, "admin_policy.html", d)
}

func (s *Server) policyPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderPolicy(w, r, http.StatusOK, s.data("Data-sharing policy"))
}

func (s *Server) policySubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Data-sharing policy")
	switch r.PostFormValue("do") {
	case "apply":
		id, err := s.applyPolicy(r, v, strings.ReplaceAll(r.PostFormValue("body"), "\r\n", "\n"), r.PostFormValue("note"))
		if err != nil {
			d.Error = "The policy was not applied: " + err.Error()
			d.Form, d.Field, d.Line = r.PostForm, "body", problemLine(err) // keep the text (issue 13.5)
			s.renderPolicy(w, r, http.StatusBadRequest, d)
			return
		}
		d.Notice = "Applied as version " + strconv.FormatInt(id, 10) + "."
	case "rollback":
		n, _ := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		id, err := s.PolicyVersions.Rollback(r.Context(), v.user.ID, n)
		if err != nil {
			d.Error = "Rollback failed: " + err.Error()
			s.renderPolicy(w, r, http.StatusBadRequest, d)
			return
		}
		s.Log.WarnContext(r.Context(), "policy rolled back", "by", v.user.ID, "to", n, "version", id)
		s.audit(r, "policy.rollback", "policy", fmt.Sprint(id), "ok", map[string]string{"to": fmt.Sprint(n)})
		d.Notice = "Version " + strconv.FormatInt(n, 10) + " is active again, as version " + strconv.FormatInt(id, 10) + "."
	case "explain":
		out, err := s.Intake.Explain(r.Context(), r.PostFormValue("from"), strings.Split(r.PostFormValue("to"), ","), []byte(r.PostFormValue("message")))
		if err != nil {
			d.Error = err.Error()
		}
		d.Policy, d.Form = &policyPage{Explain: out}, r.PostForm // the sample stays in the form (issue 13.5)
	}
	s.renderPolicy(w, r, http.StatusOK, d)
}

