package policy

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// FuzzParse: any text an admin (or a tampered version row) gives the policy
// parser is either refused with errors that name a line inside the text, or
// yields a document whose decisions are always one of the five actions,
// named after one of its rules or the default, with a permanent code for a
// reject. Seeds: the shipped and test policies, testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(clinicPolicy))
	f.Add([]byte(ShippedFor([]string{"clinic.example", "lab.example"})))
	f.Add([]byte("[default]\naction = \"reject\"\ncode = 550\nreason = \"no\"\n"))
	f.Add([]byte("[[rule]]\nname = \"x\"\nwhen.detectors = { ssn = 0 }\nthen.action = \"pgp\"\nthen.fallback = \"relay\"\n[default]\naction = \"portal\"\n"))
	f.Add([]byte("[groups]\nonc = [\"a@clinic.example\"]\n[[rule]]\nname = \"g\"\nwhen.sender_groups = [\"onc\", \"none\"]\nwhen.attachment_types = [\".pdf\"]\nwhen.attachment_over = 10\nthen.action = \"quarantine\"\n[default]\naction = \"portal\"\nexpiry_days = 4000\n"))
	f.Add([]byte("[detectors]\nmrn_pattern = \"(\"\n[default]\naction = \"portal\"\n"))
	inputs := []Input{
		{Sender: "a@clinic.example", SenderRole: "staff", Recipient: "p@example.net"},
		{Sender: "b@clinic.example", SenderRole: "admin", Recipient: "x@lab.example", RecipientHasKey: true,
			Facts: &Facts{Subject: "[secure] results", Counts: map[string]int{"ssn": 2, "mrn": 1},
				Attachments: []Attachment{{Type: "application/pdf", Ext: ".pdf", Size: 1 << 20}}}},
		{Sender: "", Recipient: "", Facts: &Facts{}},
		{Sender: "c@clinic.example", SenderRole: "security", Recipient: "d@clinic.example"},
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		doc, err := Parse(text, detectorNames)
		if err != nil {
			checkLines(t, text, err)
			return
		}
		names := []string{"default"}
		for _, r := range doc.Rules {
			names = append(names, r.Name)
		}
		check := func(d Decision) {
			if !slices.Contains([]Action{Portal, PGP, Relay, Quarantine, Reject}, d.Action) {
				t.Fatalf("decision %+v has no valid action\npolicy:\n%s", d, text)
			}
			if !slices.Contains(names, d.Rule) {
				t.Fatalf("decision names rule %q, not one of %q\npolicy:\n%s", d.Rule, names, text)
			}
			if d.Action == Reject && d.Then.Code != 0 && (d.Then.Code < 500 || d.Then.Code > 599) {
				t.Fatalf("reject with code %d\npolicy:\n%s", d.Then.Code, text)
			}
		}
		for _, in := range inputs {
			if in.Facts != nil { // with the content known, every decision is final
				check(doc.Evaluate(in))
				doc.Explain(in)
			}
			if d, final := doc.EnvelopeDecision(in); final {
				check(d)
			}
		}
	})
}

// checkLines asserts each error is a ValidationError whose line, if any,
// lies inside text.
func checkLines(t *testing.T, text []byte, err error) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	lines := bytes.Count(text, []byte("\n")) + 1
	for _, e := range errs {
		var ve *ValidationError
		if !errors.As(e, &ve) {
			t.Fatalf("error %v (%T) is not a *ValidationError", e, e)
		}
		if ve.Line < 0 || ve.Line > lines {
			t.Fatalf("error %q names line %d of a %d-line text\n%s", ve.Msg, ve.Line, lines, text)
		}
	}
}
