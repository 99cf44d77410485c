package portal

import (
	"errors"
	"strings"
	"testing"

	"github.com/phigate/phigate/policy"
)

// A held message's reason reads as a sentence (issue 13.2).
func TestRuleReasonInWords(t *testing.T) {
	yes := true
	doc := &policy.Document{Rules: []policy.Rule{
		{Name: "ssn-out", When: policy.When{Detectors: map[string]int{"ssn": 1, "mrn": 2}, RecipientDomains: []string{"*.example.org"}},
			Then: policy.Then{Action: policy.Quarantine, Reason: "Identifiers to outside."}},
		{Name: "big", When: policy.When{HasAttachment: &yes, AttachmentOver: 5 << 20}, Then: policy.Then{Action: policy.Quarantine}},
		{Name: "all", Then: policy.Then{Action: policy.Quarantine}},
	}}
	for rule, want := range map[string]string{
		"ssn-out": "Identifiers to outside. Held because the recipient's domain is *.example.org and the content has at least 2 medical record numbers or at least 1 US Social Security numbers.",
		"big":     "Held because the message has an attachment and an attachment is larger than 5.0 MB.",
		"all":     "Rule all holds every message.",
		"gone":    "Held by rule gone (no longer in the policy).",
		"default": "The policy's default holds every message no rule decides.",
	} {
		if got := ruleReason(doc, policy.Decision{Rule: rule, Version: 4}); got != want {
			t.Errorf("%s: %q\n want %q", rule, got, want)
		}
	}
	if got := ruleReason(nil, policy.Decision{Rule: "x", Version: 4}); !strings.Contains(got, "rule x of policy version 4") {
		t.Errorf("without the text: %q", got)
	}
}

// The policy editor marks the line the error names (issue 13.5).
func TestPolicyProblemLine(t *testing.T) {
	if n := problemLine(&policy.ValidationError{Line: 3, Msg: "x"}); n != 3 {
		t.Errorf("validation error: line %d", n)
	}
	if n := problemLine(errors.New("line 12: unknown action\nline 20: more")); n != 12 {
		t.Errorf("joined errors: line %d", n)
	}
	if n := problemLine(errors.New("no line here")); n != 0 {
		t.Errorf("no line: %d", n)
	}
	got := aroundLine("a\r\nb\nc\nd\ne\nf", 2)
	if len(got) != 4 || got[0].N != 1 || !got[1].Bad || got[1].Text != "b" || got[3].N != 4 {
		t.Errorf("around line 2: %+v", got)
	}
	if aroundLine("a", 0) != nil || len(aroundLine("a\nb", 9)) != 0 {
		t.Error("out of range lines")
	}
}

// The Sent page's search matches subject, recipient, status or reference.
func TestMatchSent(t *testing.T) {
	items := []sentItem{{ID: "3f2a91bc", Reference: "3F2A-91BC", Subject: "Lab results", Recipient: "a@x.example", Status: "Opened"},
		{ID: "77aa0000", Reference: "77AA-0000", Subject: "Appointment", Recipient: "b@y.example", Status: "Held for review"}}
	for q, want := range map[string]int{"lab": 1, "Y.EXAMPLE": 1, "held": 1, "3f2a-91bc": 1, "": 2, "zzz": 0, " opened ": 1} {
		if got := len(matchSent(items, q)); got != want {
			t.Errorf("%q: %d matches, want %d", q, got, want)
		}
	}
}
