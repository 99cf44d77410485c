package portal

import (
	"encoding/json"
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

// quarantineJSON is what an approver sees: who, when, which rule and which
// detectors fired. The content stays sealed (break-glass opens it).
type quarantineJSON struct {
	ID         string          `json:"id"`
	SenderID   string          `json:"sender_id"`
	Recipient  string          `json:"recipient"`
	ReceivedAt time.Time       `json:"received_at"`
	Size       int64           `json:"size"`
	Decision   json.RawMessage `json:"decision"`
}

func (s *Server) apiQuarantine(w http.ResponseWriter, r *http.Request, v *viewer) {
	list, err := s.Store.ListQuarantined(r.Context())
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	out := make([]quarantineJSON, 0, len(list))
	for _, m := range list {
		rcpt := ""
		if u, err := s.Store.UserByID(r.Context(), m.RecipientID); err == nil {
			rcpt, _ = s.Identity.Email(u)
		}
		dec := json.RawMessage(m.Decision)
		if len(dec) == 0 {
			dec = json.RawMessage("{}")
		}
		out = append(out, quarantineJSON{ID: m.ID, SenderID: m.SenderID, Recipient: rcpt, ReceivedAt: m.CreatedAt, Size: m.Size, Decision: dec})
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out})
}

func (s *Server) apiQuarantineDecide(w http.ResponseWriter, r *http.Request, v *viewer) {
	id, action := r.PathValue("id"), r.PathValue("action")
	if action != "approve" && action != "deny" {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "action must be approve or deny")
		return
	}
	err := s.Intake.Release(r.Context(), id, action == "approve", intake.Decider{UserID: v.user.ID, IP: info(r).ip})
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeJSONError(w, http.StatusNotFound, "not_found", "no such message")
		return
	case errors.Is(err, store.ErrConflict):
		writeJSONError(w, http.StatusConflict, "not_held", "this message is not in quarantine (already decided)")
		return
	case err != nil:
		s.apiFail(w, r, err)
		return
	}
	s.Log.WarnContext(r.Context(), "quarantine decision", "by", v.user.ID, "message", id, "decision", action, "ip", info(r).ip)
	writeJSON(w, http.StatusOK, map[string]string{"message": id, "decision": action})
}

func (s *Server) apiRecipientKey(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Email string `json:"email"`
		Key   string `json:"key"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	fpr, err := s.Identity.RegisterRecipientKey(r.Context(), req.Email, []byte(req.Key), v.user.ID)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad_key", reason(err))
		return
	}
	s.Log.InfoContext(r.Context(), "recipient key registered", "by", v.user.ID, "fingerprint", fpr)
	s.audit(r, "key.register", "key", fpr, "ok", map[string]string{"email": req.Email})
	writeJSON(w, http.StatusOK, map[string]string{"fingerprint": fpr})
}

// apiOwnKey lets a recipient register their own OpenPGP key; later
// messages may then come as PGP/MIME if the policy says so.
func (s *Server) apiOwnKey(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Key string `json:"key"`
	}
	if !decodeJSON(w, r, &req) {
		return
	}
	email, err := s.Identity.Email(v.user)
	if err != nil {
		s.apiFail(w, r, err)
		return
	}
	fpr, err := s.Identity.RegisterRecipientKey(r.Context(), email, []byte(req.Key), v.user.ID)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad_key", reason(err))
		return
	}
	s.audit(r, "key.register", "key", fpr, "ok", nil)
	writeJSON(w, http.StatusOK, map[string]string{"fingerprint": fpr})
}

type policyPage struct {
	Active   policyJSON
	Versions []policyJSON
	Explain  []intake.Explanation
	Held     []quarantineJSON
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
		d.Policy = &policyPage{Explain: out}
	}
	s.renderPolicy(w, r, http.StatusOK, d)
}

func (s *Server) quarantinePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderQuarantine(w, r, s.data("Quarantine"))
}

func (s *Server) renderQuarantine(w http.ResponseWriter, r *http.Request, d pageData) {
	list, err := s.Store.ListQuarantined(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Policy = &policyPage{}
	for _, m := range list {
		rcpt := ""
		if u, err := s.Store.UserByID(r.Context(), m.RecipientID); err == nil {
			rcpt, _ = s.Identity.Email(u)
		}
		d.Policy.Held = append(d.Policy.Held, quarantineJSON{ID: m.ID, SenderID: m.SenderID, Recipient: rcpt,
			ReceivedAt: m.CreatedAt, Size: m.Size, Decision: json.RawMessage(m.Decision)})
	}
	s.render(w, r, http.StatusOK, "admin_quarantine.html", d)
}

func (s *Server) quarantineSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Quarantine")
	id, action := r.PathValue("id"), r.PathValue("action")
	if action != "approve" && action != "deny" {
		d.Error = "Unknown action."
		s.renderQuarantine(w, r, d)
		return
	}
	err := s.Intake.Release(r.Context(), id, action == "approve", intake.Decider{UserID: v.user.ID, IP: info(r).ip})
	switch {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
		d.Error = "That message is no longer held (someone else decided first)."
	case err != nil:
		s.fail(w, r, err)
		return
	default:
		s.Log.WarnContext(r.Context(), "quarantine decision", "by", v.user.ID, "message", id, "decision", action, "ip", info(r).ip)
		d.Notice = "Message " + id + ": " + action + "d."
	}
	s.renderQuarantine(w, r, d)
}

// keysPage registers a recipient's OpenPGP key from the admin pages.
func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Recipient keys")
	s.render(w, r, http.StatusOK, "admin_keys.html", d)
}

func (s *Server) keysSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Recipient keys")
	email := strings.TrimSpace(r.PostFormValue("email"))
	fpr, err := s.Identity.RegisterRecipientKey(r.Context(), email, []byte(r.PostFormValue("key")), v.user.ID)
	if err != nil {
		d.Email, d.Error = email, "The key was refused: "+reason(err)
		s.render(w, r, http.StatusBadRequest, "admin_keys.html", d)
		return
	}
	s.audit(r, "key.register", "key", fpr, "ok", map[string]string{"email": email})
	d.Notice = "Registered key " + fpr + " for " + email + ". Messages to this address can now go as PGP/MIME if the policy says so."
	s.render(w, r, http.StatusOK, "admin_keys.html", d)
}

// ownKeySubmit lets a recipient register their own key from the account page.
func (s *Server) ownKeySubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	email, err := s.Identity.Email(v.user)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := s.data("Your account")
	d.Enrolled = len(v.user.TOTPSecretEnc) > 0
	d.CodesLeft, _ = s.Store.CountRecoveryCodes(r.Context(), v.user.ID)
	fpr, err := s.Identity.RegisterRecipientKey(r.Context(), email, []byte(r.PostFormValue("key")), v.user.ID)
	if err != nil {
		d.Error = "The key was refused: " + reason(err)
		s.render(w, r, http.StatusBadRequest, "account.html", d)
		return
	}
	s.audit(r, "key.register", "key", fpr, "ok", nil)
	d.Notice = "Your key " + fpr + " is registered."
	s.render(w, r, http.StatusOK, "account.html", d)
}
