package portal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
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

// opPolicy is the active policy version, its text included.
func (s *Server) opPolicy(r *http.Request, _ *viewer, _ struct{}) (policyJSON, error) {
	p, err := s.Store.LatestPolicyVersion(r.Context())
	if err != nil {
		return policyJSON{}, err
	}
	out := []policyJSON{toPolicyJSON(p, true)}
	s.authorNames(r.Context(), out)
	return out[0], nil
}

func (s *Server) apiPolicy(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opPolicy(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
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

type policyIn struct {
	Body string `json:"body"`
	Note string `json:"note"`
}

type versionOut struct {
	Version int64 `json:"version"`
}

// notApplied is a policy the engine refused: 400 invalid_policy, each
// problem (naming its line) in "problems", the first problem's line marked.
func notApplied(prefix string, err error) error {
	oe := refused(http.StatusBadRequest, "invalid_policy", prefix+err.Error(), err)
	oe.Field, oe.Line = "body", problemLine(err)
	oe.Extra = map[string]any{"problems": strings.Split(err.Error(), "\n")}
	return oe
}

// opApplyPolicy validates the text and activates it as a new version.
func (s *Server) opApplyPolicy(r *http.Request, v *viewer, in policyIn) (versionOut, error) {
	id, err := s.applyPolicy(r, v, strings.ReplaceAll(in.Body, "\r\n", "\n"), in.Note)
	if err != nil {
		return versionOut{}, notApplied("The policy was not applied: ", err)
	}
	return versionOut{Version: id}, nil
}

func (s *Server) apiPolicyApply(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in policyIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opApplyPolicy(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

type versionsOut struct {
	Versions []policyJSON `json:"versions"`
}

// opPolicyVersions lists every version, oldest first, without the texts.
func (s *Server) opPolicyVersions(r *http.Request, _ *viewer, _ struct{}) (versionsOut, error) {
	list, err := s.Store.ListPolicyVersions(r.Context())
	if err != nil {
		return versionsOut{}, err
	}
	out := make([]policyJSON, len(list))
	for i := range list {
		out[i] = toPolicyJSON(&list[i], false)
	}
	s.authorNames(r.Context(), out)
	return versionsOut{Versions: out}, nil
}

func (s *Server) apiPolicyVersions(w http.ResponseWriter, r *http.Request, v *viewer) {
	out, err := s.opPolicyVersions(r, v, struct{}{})
	s.apiAnswer(w, r, http.StatusOK, out, err)
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

type rollbackIn struct {
	Version int64 `json:"version"`
}

// opRollback makes an earlier version active again, as a new version.
func (s *Server) opRollback(r *http.Request, v *viewer, in rollbackIn) (versionOut, error) {
	id, err := s.PolicyVersions.Rollback(r.Context(), v.user.ID, in.Version)
	if errors.Is(err, store.ErrNotFound) {
		oe := refused(http.StatusNotFound, "not_found", "No such version.", err)
		oe.Field = "version"
		return versionOut{}, oe
	}
	if err != nil {
		// The old text no longer passes (a detector it names is gone).
		return versionOut{}, notApplied("Rollback failed: ", err)
	}
	s.Log.WarnContext(r.Context(), "policy rolled back", "by", v.user.ID, "to", in.Version, "version", id)
	s.audit(r, "policy.rollback", "policy", fmt.Sprint(id), "ok", map[string]string{"to": fmt.Sprint(in.Version)})
	return versionOut{Version: id}, nil
}

func (s *Server) apiPolicyRollback(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in rollbackIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opRollback(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
}

type explainIn struct {
	From    string   `json:"from"`
	To      []string `json:"to"`
	Message string   `json:"message"`
}

type explainOut struct {
	Recipients []intake.Explanation `json:"recipients"`
}

// opExplain says what the active policy would do with a message from one
// sender to each recipient, and why.
func (s *Server) opExplain(r *http.Request, _ *viewer, in explainIn) (explainOut, error) {
	out, err := s.Intake.Explain(r.Context(), in.From, in.To, []byte(in.Message))
	if err != nil {
		return explainOut{}, refused(http.StatusBadRequest, "bad_request", reason(err), err)
	}
	return explainOut{Recipients: out}, nil
}

func (s *Server) apiPolicyExplain(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in explainIn
	if !decodeJSON(w, r, &in) {
		return
	}
	out, err := s.opExplain(r, v, in)
	s.apiAnswer(w, r, http.StatusOK, out, err)
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
	v := viewerOf(r)
	active, err := s.opPolicy(r, v, struct{}{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	versions, err := s.opPolicyVersions(r, v, struct{}{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if d.Policy == nil {
		d.Policy = &policyPage{}
	}
	d.Policy.Active = active
	for i := len(versions.Versions) - 1; i >= 0; i-- {
		d.Policy.Versions = append(d.Policy.Versions, versions.Versions[i])
	}
	if d.Form.Has("body") {
		d.Policy.Lines = aroundLine(d.Form.Get("body"), d.Line)
	}
	s.render(w, r, status, "admin_policy.html", d)
}

func (s *Server) policyPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Data-sharing policy")
	q := r.URL.Query()
	id, _ := strconv.ParseInt(q.Get("version"), 10, 64)
	to, _ := strconv.ParseInt(q.Get("to"), 10, 64)
	switch {
	case q.Get("done") == "applied" && id > 0:
		d.Notice = "Applied as version " + strconv.FormatInt(id, 10) + "."
	case q.Get("done") == "rolled-back" && id > 0 && to > 0:
		d.Notice = "Version " + strconv.FormatInt(to, 10) + " is active again, as version " + strconv.FormatInt(id, 10) + "."
	}
	s.renderPolicy(w, r, http.StatusOK, d)
}

// policySubmit is the policy page's three forms: apply, roll back, and
// explain (a question, answered on the page, nothing changed).
func (s *Server) policySubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	reshow := func(status int, d pageData) { s.renderPolicy(w, r, status, d) }
	switch r.PostFormValue("do") {
	case "apply":
		out, err := s.opApplyPolicy(r, v, policyIn{Body: r.PostFormValue("body"), Note: r.PostFormValue("note")})
		if err != nil {
			s.pageRefused(w, r, err, s.data("Data-sharing policy"), reshow) // the text stays, its line marked (issue 13.5)
			return
		}
		seeOther(w, r, "/admin/policy?version="+strconv.FormatInt(out.Version, 10), "applied")
	case "rollback":
		n, _ := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		out, err := s.opRollback(r, v, rollbackIn{Version: n})
		if err != nil {
			d := s.data("Data-sharing policy")
			d.Form = url.Values{} // the editor shows the active text, not a refused one
			s.pageRefused(w, r, err, d, reshow)
			return
		}
		seeOther(w, r, "/admin/policy?version="+strconv.FormatInt(out.Version, 10)+"&to="+strconv.FormatInt(n, 10), "rolled-back")
	case "explain":
		in := explainIn{From: r.PostFormValue("from"), To: strings.Split(r.PostFormValue("to"), ","), Message: r.PostFormValue("message")}
		out, err := s.opExplain(r, v, in)
		d := s.data("Data-sharing policy")
		d.Form = r.PostForm // the sample stays in the form (issue 13.5)
		if err != nil {
			s.pageRefused(w, r, err, d, reshow)
			return
		}
		d.Policy = &policyPage{Explain: out.Recipients}
		s.renderPolicy(w, r, http.StatusOK, d)
	default:
		s.renderPolicy(w, r, http.StatusOK, s.data("Data-sharing policy"))
	}
}
