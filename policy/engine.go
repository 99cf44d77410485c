package policy

import (
	"path"
	"strings"
	"sync"
)

// Facts are what a decision may know about the message itself, computed
// once per message (detector counts come from package detect).
type Facts struct {
	Subject     string
	Counts      map[string]int
	Attachments []Attachment
}

type Attachment struct {
	Type string // content type, lower case
	Ext  string // file extension with dot, lower case ("" if none)
	Size int64
}

// Evaluate decides for one recipient with a parsed document: the first rule
// whose conditions all hold, else the default. in.Facts may be nil (at RCPT
// time): then rules that look at content cannot match.
func (d *Document) Evaluate(in Input) Decision {
	dec, _ := d.trace(in, nil)
	return dec
}

// Step is one rule's part in an explanation.
type Step struct {
	Rule    string `json:"rule"`
	Matched bool   `json:"matched"`
	Why     string `json:"why"` // the first condition that failed, or "all conditions hold"
}

// Explain decides like Evaluate and says why each rule before the deciding
// one did not match.
func (d *Document) Explain(in Input) (Decision, []Step) {
	var steps []Step
	dec, _ := d.trace(in, &steps)
	return dec, steps
}

// EnvelopeDecision decides from the envelope alone, at RCPT time. final is
// false when a rule that looks at content could still change the outcome
// (its envelope conditions hold): then only DATA can decide.
func (d *Document) EnvelopeDecision(in Input) (dec Decision, final bool) {
	in.Facts = nil
	return d.trace(in, nil)
}

func (d *Document) trace(in Input, steps *[]Step) (Decision, bool) {
	for _, r := range d.Rules {
		why, needsContent := r.When.mismatch(in, d.Groups)
		if steps != nil {
			*steps = append(*steps, Step{Rule: r.Name, Matched: why == "", Why: orAll(why)})
		}
		if needsContent {
			return Decision{}, false
		}
		if why == "" {
			return d.retained(decision(r.Name, r.Then, r.When, in)), true
		}
	}
	if steps != nil {
		*steps = append(*steps, Step{Rule: "default", Matched: true, Why: "no rule matched"})
	}
	return d.retained(decision("default", d.Default, When{}, in)), true
}

func orAll(why string) string {
	if why == "" {
		return "all conditions hold"
	}
	return why
}

func decision(rule string, t Then, w When, in Input) Decision {
	dec := Decision{Action: t.Action, Rule: rule, Then: t, NoReply: t.AllowReply != nil && !*t.AllowReply,
		ReplyMaxBytes: t.ReplyMaxBytes, NoDownload: t.AllowDownload != nil && !*t.AllowDownload, Require2FA: t.Require2FA,
		Passcode: t.Passcode && t.Action == Portal}
	if in.Facts != nil {
		dec.Detectors = map[string]int{}
		for name, n := range in.Facts.Counts {
			if n > 0 {
				dec.Detectors[name] = n
			}
		}
	}
	if t.Action == PGP && !in.RecipientHasKey {
		fb := t.Fallback
		if fb == "" {
			fb = Portal
		}
		dec.Action, dec.Fallback = fb, true
	}
	if dec.Action == Reject {
		dec.Reason = t.Reason
		if dec.Reason == "" {
			dec.Reason = "Not allowed by the organisation's data-sharing policy (rule " + rule + ")"
		}
	}
	return dec
}

// mismatch returns the first condition of w that fails for in ("" if all
// hold). needsContent is true when the envelope conditions hold but a
// content condition cannot be judged because in.Facts is nil.
func (w When) mismatch(in Input, groups map[string][]string) (why string, needsContent bool) {
	rcpt := strings.ToLower(in.Recipient)
	if len(w.Senders) > 0 && !containsFold(w.Senders, in.Sender) {
		return "sender not listed", false
	}
	if len(w.SenderGroups) > 0 {
		member := false
		for _, g := range w.SenderGroups {
			member = member || containsFold(groups[g], in.Sender)
		}
		if !member {
			return "sender in none of the groups", false
		}
	}
	if len(w.SenderRoles) > 0 && !containsFold(w.SenderRoles, in.SenderRole) {
		return "sender role " + in.SenderRole + " not listed", false
	}
	if len(w.Recipients) > 0 && !containsFold(w.Recipients, rcpt) {
		return "recipient not listed", false
	}
	if len(w.RecipientDomains) > 0 && !domainMatches(w.RecipientDomains, rcpt) {
		return "recipient domain not listed", false
	}
	if w.RecipientHasKey != nil && *w.RecipientHasKey != in.RecipientHasKey {
		if in.RecipientHasKey {
			return "recipient has a key", false
		}
		return "recipient has no registered key", false
	}
	if !w.looksAtContent() {
		return "", false
	}
	if in.Facts == nil {
		return "content not known yet", true
	}
	f := in.Facts
	if len(w.Detectors) > 0 {
		hit := false
		for name, min := range w.Detectors {
			if f.Counts[name] >= min {
				hit = true
				break
			}
		}
		if !hit {
			return "no detector reached its count", false
		}
	}
	if w.SubjectTag != "" && !strings.Contains(strings.ToLower(f.Subject), strings.ToLower(w.SubjectTag)) {
		return "subject tag " + w.SubjectTag + " absent", false
	}
	if w.HasAttachment != nil && *w.HasAttachment != (len(f.Attachments) > 0) {
		if *w.HasAttachment {
			return "no attachment", false
		}
		return "has an attachment", false
	}
	if len(w.AttachmentTypes) > 0 && !anyAttachmentType(w.AttachmentTypes, f.Attachments) {
		return "no attachment of the listed types", false
	}
	if w.AttachmentOver > 0 && !anyAttachmentOver(w.AttachmentOver, f.Attachments) {
		return "no attachment over the size", false
	}
	return "", false
}

func (w When) looksAtContent() bool {
	return len(w.Detectors) > 0 || w.SubjectTag != "" || w.HasAttachment != nil ||
		len(w.AttachmentTypes) > 0 || w.AttachmentOver > 0
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}

// domainMatches: "lab.example" matches exactly; "*.example.org" matches any
// subdomain of example.org (not example.org itself).
func domainMatches(patterns []string, addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	dom := strings.TrimSuffix(addr[at+1:], ".")
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(p), "."))
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(dom, "."+suffix) {
				return true
			}
		} else if dom == p {
			return true
		}
	}
	return false
}

func anyAttachmentType(types []string, atts []Attachment) bool {
	for _, a := range atts {
		for _, t := range types {
			t = strings.ToLower(strings.TrimSpace(t))
			if t == a.Type || (strings.HasPrefix(t, ".") && t == a.Ext) {
				return true
			}
		}
	}
	return false
}

func anyAttachmentOver(n int64, atts []Attachment) bool {
	for _, a := range atts {
		if a.Size > n {
			return true
		}
	}
	return false
}

// ExtOf returns a lower-case file extension for a filename.
func ExtOf(name string) string { return strings.ToLower(path.Ext(name)) }

// Engine holds the active policy version; every decision reads it, and
// applying a version swaps it atomically.
type Engine struct {
	mu      sync.RWMutex
	doc     *Document
	version int64
}

func (e *Engine) Set(doc *Document, version int64) {
	e.mu.Lock()
	e.doc, e.version = doc, version
	e.mu.Unlock()
}

// Current returns the active document and its version id.
func (e *Engine) Current() (*Document, int64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.doc, e.version
}

// Decide implements Decider with the active version.
func (e *Engine) Decide(in Input) Decision {
	doc, v := e.Current()
	dec := doc.Evaluate(in)
	dec.Version = v
	return dec
}

// Explain decides with the active version and says why.
func (e *Engine) Explain(in Input) (Decision, []Step) {
	doc, v := e.Current()
	dec, steps := doc.Explain(in)
	dec.Version = v
	return dec, steps
}

// DecideEnvelope decides at RCPT time; see Document.EnvelopeDecision.
func (e *Engine) DecideEnvelope(in Input) (Decision, bool) {
	doc, v := e.Current()
	dec, final := doc.EnvelopeDecision(in)
	dec.Version = v
	return dec, final
}
