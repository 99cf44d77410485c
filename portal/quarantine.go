package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/phigate/phigate/audit"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/message"
	"github.com/phigate/phigate/policy"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// heldItem is one held message with the context a reviewer decides on
// (issue 13.2): who sent it to whom, which rule held it and why, which
// detectors fired (counts only), size and attachments. Nothing of the
// content: that is the preview, opened on request and audited.
type heldItem struct {
	ID          string      `json:"id"`
	Ref         string      `json:"reference"`
	Sender      string      `json:"sender"`
	Recipient   string      `json:"recipient"`
	ReceivedAt  time.Time   `json:"received_at"`
	Size        int64       `json:"size"`
	Attachments int         `json:"attachments"` // -1: not known (held before issue 13.2)
	Rule        string      `json:"rule"`
	Reason      string      `json:"reason"`
	Detectors   []detection `json:"detectors"`
	Version     int64       `json:"policy_version"`
	// Previewable: a reviewers' copy exists (sealed to the admins who had
	// a password when the message was held).
	Previewable bool `json:"previewable"`
	// SenderID and Decision are what the API gave before (issue 13.2 kept
	// them): the account id and the recorded decision's JSON.
	SenderID string          `json:"sender_id"`
	Decision json.RawMessage `json:"decision"`
}

// detection is one detector that fired, in words, with its count.
type detection struct {
	Name  string `json:"name"`
	Words string `json:"words"`
	Count int    `json:"count"`
}

// heldView is the quarantine pages' data.
type heldView struct {
	List    []heldItem
	Item    *heldItem
	Preview *message.CopySummary
	// NoPreview says why the preview cannot be shown to this reviewer.
	NoPreview string
	// Action is "approve" or "deny" on the confirmation page.
	Action string
}

// detectorWords name the detectors (detect package) for people.
var detectorWords = map[string]string{
	"ssn": "US Social Security numbers", "npi": "provider numbers (NPI)", "mbi": "Medicare numbers (MBI)",
	"icd10": "diagnosis codes (ICD-10)", "dob": "dates of birth", "mrn": "medical record numbers",
	"card": "payment card numbers", "phone": "phone numbers", "keyword": "keywords from the policy",
}

func detectorName(name string) string {
	if w, ok := detectorWords[name]; ok {
		return w
	}
	return name
}

// heldItems builds the context of held messages: one lookup per account,
// one policy text per version, one query for the attachment counts.
func (s *Server) heldItems(ctx context.Context, msgs []store.Message) ([]heldItem, error) {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	// The store takes a bounded number of ids per call.
	copies := map[string]store.MessageCopy{}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		got, err := s.Store.MessageCopies(ctx, store.CopyReview, ids[:n]...)
		if err != nil {
			return nil, err
		}
		for k, c := range got {
			copies[k] = c
		}
		ids = ids[n:]
	}
	n := s.namer(ctx)
	docs := map[int64]*policy.Document{}
	out := make([]heldItem, 0, len(msgs))
	for _, m := range msgs {
		dec := decisionOf(&m)
		it := heldItem{ID: m.ID, Ref: web.Ref(m.ID), Sender: n.user(m.SenderID), Recipient: n.user(m.RecipientID),
			ReceivedAt: m.CreatedAt, Size: m.Size, Attachments: -1, Rule: dec.Rule, Version: dec.Version,
			SenderID: m.SenderID, Decision: json.RawMessage(m.Decision)}
		if len(it.Decision) == 0 {
			it.Decision = json.RawMessage("{}")
		}
		if c, ok := copies[m.ID]; ok {
			it.Attachments, it.Previewable = c.Attachments, len(c.Data) > 0
		}
		names := make([]string, 0, len(dec.Detectors))
		for k := range dec.Detectors {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			it.Detectors = append(it.Detectors, detection{Name: k, Words: detectorName(k), Count: dec.Detectors[k]})
		}
		doc, ok := docs[dec.Version]
		if !ok {
			doc = s.policyDoc(ctx, dec.Version)
			docs[dec.Version] = doc
		}
		it.Reason = ruleReason(doc, dec)
		out = append(out, it)
	}
	return out, nil
}

// policyDoc reads the text of one policy version (nil if it cannot).
func (s *Server) policyDoc(ctx context.Context, version int64) *policy.Document {
	pv, err := s.Store.PolicyVersionByID(ctx, version)
	if err != nil {
		return nil
	}
	var doc policy.Document
	if _, err := toml.Decode(pv.Body, &doc); err != nil {
		return nil
	}
	return &doc
}

// ruleReason says in words why the rule of dec held a message: the
// rule's own reason when it gives one, then its conditions.
func ruleReason(doc *policy.Document, dec policy.Decision) string {
	if doc == nil {
		return "Held by rule " + dec.Rule + " of policy version " + fmt.Sprint(dec.Version) + "."
	}
	if dec.Rule == "default" {
		return "The policy's default holds every message no rule decides."
	}
	for _, r := range doc.Rules {
		if r.Name != dec.Rule {
			continue
		}
		var parts []string
		if r.Then.Reason != "" {
			parts = append(parts, strings.TrimSuffix(r.Then.Reason, ".")+".")
		}
		if w := whenWords(r.When); w != "" {
			parts = append(parts, "Held because "+w+".")
		}
		if len(parts) == 0 {
			return "Rule " + dec.Rule + " holds every message."
		}
		return strings.Join(parts, " ")
	}
	return "Held by rule " + dec.Rule + " (no longer in the policy)."
}

// whenWords are a rule's conditions as one sentence.
func whenWords(w policy.When) string {
	var c []string
	list := func(xs []string) string { return strings.Join(xs, ", ") }
	if len(w.Senders) > 0 {
		c = append(c, "the sender is "+list(w.Senders))
	}
	if len(w.SenderGroups) > 0 {
		c = append(c, "the sender is in the group "+list(w.SenderGroups))
	}
	if len(w.SenderRoles) > 0 {
		c = append(c, "the sender's role is "+list(w.SenderRoles))
	}
	if len(w.Recipients) > 0 {
		c = append(c, "the recipient is "+list(w.Recipients))
	}
	if len(w.RecipientDomains) > 0 {
		c = append(c, "the recipient's domain is "+list(w.RecipientDomains))
	}
	if w.RecipientHasKey != nil {
		if *w.RecipientHasKey {
			c = append(c, "the recipient has a registered OpenPGP key")
		} else {
			c = append(c, "the recipient has no registered OpenPGP key")
		}
	}
	if len(w.Detectors) > 0 {
		names := make([]string, 0, len(w.Detectors))
		for k := range w.Detectors {
			names = append(names, k)
		}
		sort.Strings(names)
		var d []string
		for _, k := range names {
			d = append(d, fmt.Sprintf("at least %d %s", max(w.Detectors[k], 1), detectorName(k)))
		}
		c = append(c, "the content has "+strings.Join(d, " or "))
	}
	if w.SubjectTag != "" {
		c = append(c, "the subject carries the tag "+w.SubjectTag)
	}
	if w.HasAttachment != nil {
		if *w.HasAttachment {
			c = append(c, "the message has an attachment")
		} else {
			c = append(c, "the message has no attachment")
		}
	}
	if len(w.AttachmentTypes) > 0 {
		c = append(c, "an attachment is of type "+list(w.AttachmentTypes))
	}
	if w.AttachmentOver > 0 {
		c = append(c, "an attachment is larger than "+sizeWords(w.AttachmentOver))
	}
	return strings.Join(c, " and ")
}

func sizeWords(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// heldOne is one held message's context; ErrNotFound when it is not held.
func (s *Server) heldOne(ctx context.Context, id string) (*heldItem, error) {
	m, err := s.Store.MessageMeta(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.State != store.StateQuarantined {
		return nil, store.ErrNotFound
	}
	items, err := s.heldItems(ctx, []store.Message{*m})
	if err != nil {
		return nil, err
	}
	return &items[0], nil
}

// errNoReviewKey: the reviewers' copy was not sealed to this admin.
var errNoReviewKey = errors.New("the held copy is not sealed to this reviewer's key")

// heldPreview opens the reviewers' copy of a held message for v. The
// quarantine.preview entry commits in the transaction that reads the copy
// (store.ReviewCopy): no entry, no preview.
func (s *Server) heldPreview(r *http.Request, v *viewer, id string) (*message.CopySummary, error) {
	b, err := audit.Prepare(r.Context(), s.Audit, audit.Entry{Actor: v.user.ID, IP: info(r).ip, Action: "quarantine.preview",
		ObjectType: "message", ObjectID: id, Outcome: audit.OK, Correlation: logx.Correlation(r.Context())})
	if err != nil {
		return nil, err
	}
	c, err := s.Store.ReviewCopy(r.Context(), id, b.Func())
	if err != nil {
		return nil, err
	}
	if err := b.Committed(r.Context()); err != nil {
		return nil, err
	}
	if len(c.Data) == 0 {
		return nil, errNoReviewKey
	}
	plain, _, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: c.KeyPackets, Data: c.Data}, v.key, s.Gateway)
	if err != nil {
		s.Log.InfoContext(r.Context(), "held preview not readable", "user", v.user.ID, "message", id, "err", err)
		return nil, errNoReviewKey
	}
	var sum message.CopySummary
	if err := json.Unmarshal(plain, &sum); err != nil {
		return nil, err
	}
	s.Log.InfoContext(r.Context(), "held message previewed", "user", v.user.ID, "message", id, "ip", info(r).ip)
	return &sum, nil
}

// quarantineNotices are the list's notices after a decision (seeOther).
var quarantineNotices = map[string]string{
	"approved": "Approved: the message is delivered and its recipient notified. The sender has been told.",
	"denied":   "Denied: the message will not be delivered. The sender has been told.",
}

func (s *Server) quarantineList(w http.ResponseWriter, r *http.Request, v *viewer) {
	d := s.data("Quarantine")
	d.Notice = doneNotice(r, quarantineNotices)
	s.renderQuarantineList(w, r, http.StatusOK, d)
}

func (s *Server) renderQuarantineList(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	out, err := s.opListQuarantine(r, viewerOf(r), listQuarantineIn{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Held = &heldView{List: out.Messages}
	s.render(w, r, status, "admin_quarantine.html", d)
}

type listQuarantineIn struct{}

type heldList struct {
	Messages []heldItem `json:"messages"`
}

// opListQuarantine lists the held messages with their context, oldest
// first. It reads no content: the preview is heldPreview's, audited.
func (s *Server) opListQuarantine(r *http.Request, v *viewer, _ listQuarantineIn) (heldList, error) {
	list, err := s.Store.ListQuarantined(r.Context())
	if err != nil {
		return heldList{}, err
	}
	items, err := s.heldItems(r.Context(), list)
	return heldList{Messages: items}, err
}

// decideIn is an approve or deny: the id and action come from the path,
// the note from the form or the JSON body.
type decideIn struct {
	ID     string `json:"-"`
	Action string `json:"-"`
	Note   string `json:"note"`
}

type decideOut struct {
	Message  string `json:"message"`
	Decision string `json:"decision"`
	done     string // the page's notice key
}

// opDecideQuarantine approves or denies a held message with the
// decider's note (issue 13.2): the note is required in both faces and
// kept, encrypted, in the quarantine.approve/deny entry that commits with
// the decision (intake.Release).
func (s *Server) opDecideQuarantine(r *http.Request, v *viewer, in decideIn) (decideOut, error) {
	in.Note = strings.TrimSpace(in.Note)
	switch {
	case in.Action != "approve" && in.Action != "deny":
		return decideOut{}, refused(http.StatusBadRequest, "bad_request", "The action must be approve or deny.", nil)
	case in.Note == "":
		e := refused(http.StatusBadRequest, "note_required", "Write a short note on why: it is kept with the decision in the audit trail.", nil)
		e.Field = "note"
		return decideOut{}, e
	case len(in.Note) > maxDecisionNote:
		e := refused(http.StatusBadRequest, "note_too_long", fmt.Sprintf("The note is too long: keep it under %d characters.", maxDecisionNote), nil)
		e.Field = "note"
		return decideOut{}, e
	}
	err := s.Intake.Release(r.Context(), in.ID, in.Action == "approve", intake.Decider{UserID: v.user.ID, IP: info(r).ip, Note: in.Note})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return decideOut{}, refused(http.StatusNotFound, "not_found", "There is no such message.", err)
	case errors.Is(err, store.ErrConflict):
		return decideOut{}, refused(http.StatusConflict, "not_held",
			"That message is no longer held (someone else decided first, or it was recalled).", err)
	case err != nil:
		return decideOut{}, err
	}
	s.Log.WarnContext(r.Context(), "quarantine decision", "by", v.user.ID, "message", in.ID, "decision", in.Action, "ip", info(r).ip)
	return decideOut{Message: in.ID, Decision: in.Action, done: map[string]string{"approve": "approved", "deny": "denied"}[in.Action]}, nil
}

// quarantineReview shows one held message; with ?preview=1 also its
// subject and preview (an audited access).
func (s *Server) quarantineReview(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderHeld(w, r, v, http.StatusOK, s.data("Review a held message"), "")
}

// quarantineConfirm asks for the decision's note and confirmation.
func (s *Server) quarantineConfirm(w http.ResponseWriter, r *http.Request, v *viewer) {
	action := r.PathValue("action")
	if confirmTitle[action] == "" {
		s.notFoundPage(w, r)
		return
	}
	s.renderHeld(w, r, v, http.StatusOK, s.data(confirmTitle[action]), action)
}

var confirmTitle = map[string]string{"approve": "Approve a held message", "deny": "Deny a held message"}

func (s *Server) renderHeld(w http.ResponseWriter, r *http.Request, v *viewer, status int, d pageData, action string) {
	id := r.PathValue("id")
	it, err := s.heldOne(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		if d.Error == "" {
			d.Error, status = "That message is no longer held (someone decided on it, or it was recalled).", http.StatusNotFound
		}
		s.renderQuarantineList(w, r, status, d)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hv := &heldView{Item: it, Action: action}
	if r.URL.Query().Get("preview") == "1" && action == "" {
		hv.Preview, err = s.heldPreview(r, v, id)
		switch {
		case errors.Is(err, errNoReviewKey):
			hv.NoPreview = "The preview was sealed to the admins who had set their password when the message was held; your key is not among them. Emergency access can open the message if it must be read."
		case errors.Is(err, store.ErrNotFound):
			hv.NoPreview = "No preview was kept for this message."
		case err != nil:
			s.fail(w, r, err)
			return
		}
	}
	d.Held = hv
	s.render(w, r, status, "admin_quarantine_item.html", d)
}

// quarantineDecideSubmit is the page face of opDecideQuarantine: a
// refusal shows the confirmation again with the note typed; success goes
// back to the list (POST-redirect-GET).
func (s *Server) quarantineDecideSubmit(w http.ResponseWriter, r *http.Request, v *viewer) {
	in := decideIn{ID: r.PathValue("id"), Action: r.PathValue("action"), Note: r.PostFormValue("note")}
	out, err := s.opDecideQuarantine(r, v, in)
	if err != nil {
		s.pageRefused(w, r, err, s.data(confirmTitle[in.Action]), func(status int, d pageData) { s.renderHeld(w, r, v, status, d, in.Action) })
		return
	}
	seeOther(w, r, "/admin/quarantine", out.done)
}

// maxDecisionNote bounds the note kept in the audit entry (the trail
// stores at most 256 bytes of a field a client typed, audit/bound.go).
const maxDecisionNote = 250

func (s *Server) notFoundPage(w http.ResponseWriter, r *http.Request) {
	d := s.data("Not found")
	d.Error = "There is nothing at this address."
	s.render(w, r, http.StatusNotFound, "error.html", d)
}
