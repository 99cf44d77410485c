package policy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/store"
)

var detectorNames = []string{"ssn", "npi", "mbi", "icd10", "dob", "mrn", "card", "phone", "keyword"}

const clinicPolicy = `[detectors]
mrn_pattern = "MRN-\\d{6}"
keywords = ["oncology"]

[[rule]]
name = "internal"
when.recipient_domains = ["clinic.example"]
then.action = "relay"

[[rule]]
name = "blocked"
when.recipient_domains = ["badmail.example", "*.spam.example"]
then.action = "reject"
then.code = 550
then.reason = "Mail to this domain is blocked by Example Clinic policy"

[[rule]]
name = "partner-lab"
when.recipient_domains = ["lab.partner.example"]
then.action = "relay"

[[rule]]
name = "ssn-quarantine"
when.detectors = { ssn = 1, card = 1 }
then.action = "quarantine"

[[rule]]
name = "secure-tag"
when.subject_tag = "[secure]"
then.action = "portal"
then.expiry_days = 7
then.require_2fa = true

[[rule]]
name = "key"
when.recipient_has_key = true
then.action = "pgp"
then.fallback = "portal"

[[rule]]
name = "big-pdf"
when.attachment_types = ["application/pdf"]
when.attachment_over = 1000000
then.action = "quarantine"

[default]
action = "portal"
expiry_days = 30
`

func mustParse(t *testing.T, text string) *Document {
	t.Helper()
	d, err := Parse([]byte(text), detectorNames)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRuleMatching(t *testing.T) {
	d := mustParse(t, clinicPolicy)
	yes := true
	_ = yes
	cases := []struct {
		name   string
		in     Input
		action Action
		rule   string
	}{
		{"org domain relays", Input{Recipient: "nurse@clinic.example", Facts: &Facts{}}, Relay, "internal"},
		{"org domain, any case", Input{Recipient: "Nurse@CLINIC.example", Facts: &Facts{}}, Relay, "internal"},
		{"subdomain of org is not org", Input{Recipient: "x@sub.clinic.example", Facts: &Facts{}}, Portal, "default"},
		{"blocked domain", Input{Recipient: "x@badmail.example", Facts: &Facts{}}, Reject, "blocked"},
		{"wildcard subdomain blocked", Input{Recipient: "x@a.b.spam.example", Facts: &Facts{}}, Reject, "blocked"},
		{"wildcard does not match apex", Input{Recipient: "x@spam.example", Facts: &Facts{}}, Portal, "default"},
		{"partner lab relays", Input{Recipient: "x@lab.partner.example", Facts: &Facts{}}, Relay, "partner-lab"},
		{"ssn quarantines", Input{Recipient: "p@example.net", Facts: &Facts{Counts: map[string]int{"ssn": 2}}}, Quarantine, "ssn-quarantine"},
		{"card quarantines too (any detector)", Input{Recipient: "p@example.net", Facts: &Facts{Counts: map[string]int{"card": 1}}}, Quarantine, "ssn-quarantine"},
		{"phone alone does not", Input{Recipient: "p@example.net", Facts: &Facts{Counts: map[string]int{"phone": 3}}}, Portal, "default"},
		{"subject tag", Input{Recipient: "p@example.net", Facts: &Facts{Subject: "Results [SECURE]"}}, Portal, "secure-tag"},
		{"key holder gets pgp", Input{Recipient: "p@example.net", RecipientHasKey: true, Facts: &Facts{}}, PGP, "key"},
		{"big pdf quarantined", Input{Recipient: "p@example.net", Facts: &Facts{Attachments: []Attachment{{Type: "application/pdf", Ext: ".pdf", Size: 2e6}}}}, Quarantine, "big-pdf"},
		{"small pdf is fine", Input{Recipient: "p@example.net", Facts: &Facts{Attachments: []Attachment{{Type: "application/pdf", Ext: ".pdf", Size: 1e5}}}}, Portal, "default"},
		{"default", Input{Recipient: "p@example.net", Facts: &Facts{}}, Portal, "default"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dec := d.Evaluate(c.in)
			if dec.Action != c.action || dec.Rule != c.rule {
				t.Errorf("got %s by %s, want %s by %s", dec.Action, dec.Rule, c.action, c.rule)
			}
		})
	}
	// The decision records detector counts, never values.
	dec := d.Evaluate(Input{Recipient: "p@example.net", Facts: &Facts{Counts: map[string]int{"ssn": 2, "npi": 0}}})
	if dec.Detectors["ssn"] != 2 || len(dec.Detectors) != 1 {
		t.Errorf("detectors %v", dec.Detectors)
	}
	if dec := d.Evaluate(Input{Recipient: "x@badmail.example"}); dec.Reason != "Mail to this domain is blocked by Example Clinic policy" {
		t.Errorf("reject reason %q", dec.Reason)
	}
	if dec := d.Evaluate(Input{Recipient: "p@example.net", Facts: &Facts{Subject: "[secure] x"}}); dec.Then.ExpiryDays != 7 || !dec.Then.Require2FA {
		t.Errorf("portal options %+v", dec.Then)
	}
}

func TestPGPFallback(t *testing.T) {
	d := mustParse(t, `[[rule]]
name = "all-pgp"
then.action = "pgp"
then.fallback = "reject"
[default]
action = "portal"
`)
	dec := d.Evaluate(Input{Recipient: "p@example.net", Facts: &Facts{}})
	if dec.Action != Reject || !dec.Fallback || dec.Rule != "all-pgp" {
		t.Errorf("no key, fallback reject: %+v", dec)
	}
	dec = d.Evaluate(Input{Recipient: "p@example.net", RecipientHasKey: true, Facts: &Facts{}})
	if dec.Action != PGP || dec.Fallback {
		t.Errorf("with key: %+v", dec)
	}
}

func TestEnvelopeDecision(t *testing.T) {
	d := mustParse(t, clinicPolicy)
	// Before any content rule, the blocked domain is final at RCPT time.
	if dec, final := d.EnvelopeDecision(Input{Recipient: "x@badmail.example"}); !final || dec.Action != Reject {
		t.Errorf("blocked at RCPT: %+v %v", dec, final)
	}
	// A content rule comes first for an ordinary recipient: not final.
	if _, final := d.EnvelopeDecision(Input{Recipient: "p@example.net"}); final {
		t.Error("decided before the content rule could look at content")
	}
}

func TestExplain(t *testing.T) {
	d := mustParse(t, clinicPolicy)
	dec, steps := d.Explain(Input{Recipient: "p@example.net", Facts: &Facts{Subject: "[secure]"}})
	if dec.Rule != "secure-tag" || len(steps) != 5 || !steps[4].Matched || steps[0].Why != "recipient domain not listed" {
		t.Errorf("explain: %+v %+v", dec, steps)
	}
}

func TestValidationNamesLines(t *testing.T) {
	cases := map[string]struct {
		text string
		want string
	}{
		"unknown detector": {"[[rule]]\nname = \"a\"\nthen.action = \"portal\"\n\n[[rule]]\nname = \"b\"\nwhen.detectors = { dna = 1 }\nthen.action = \"portal\"\n[default]\naction = \"portal\"\n",
			"line 5: rule 2 (b): unknown detector \"dna\""},
		"bad action":     {"[[rule]]\nname = \"a\"\nthen.action = \"email\"\n[default]\naction = \"portal\"\n", "line 1: rule 1 (a): unknown action \"email\""},
		"duplicate name": {"[[rule]]\nname = \"a\"\nthen.action = \"portal\"\n[[rule]]\nname = \"a\"\nthen.action = \"relay\"\n[default]\naction = \"portal\"\n", "line 4: rule 2 (a): another rule"},
		"no default":     {"[[rule]]\nname = \"a\"\nthen.action = \"portal\"\n", "default: [default] needs an action"},
		"syntax":         {"[default]\naction = portal\n", "line 2:"},
		"unknown key":    {"[default]\naction = \"portal\"\ncolour = \"red\"\n", "line 3: unknown setting"},
		"bad regexp":     {"[detectors]\nmrn_pattern = \"(\"\n[default]\naction = \"portal\"\n", "line 2: detectors.mrn_pattern"},
		"bad code":       {"[[rule]]\nname = \"a\"\nthen.action = \"reject\"\nthen.code = 250\n[default]\naction = \"portal\"\n", "use a permanent 5xx"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(c.text), detectorNames)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte(ShippedFor([]string{"clinic.example"})), detectorNames); err != nil {
		t.Errorf("shipped policy: %v", err)
	}
}

func TestVersionsAndRollback(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := &Engine{}
	v := &Versions{Store: st, Engine: e, Detectors: detectorNames, OrgDomains: []string{"clinic.example"}}
	if err := v.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if doc, id := e.Current(); id != 1 || doc.Evaluate(Input{Recipient: "a@clinic.example"}).Action != Relay {
		t.Fatalf("shipped policy not active: %d", id)
	}
	id2, err := v.Apply(ctx, "admin1", clinicPolicy, "block badmail")
	if err != nil || id2 != 2 {
		t.Fatal(id2, err)
	}
	if dec := e.Decide(Input{Recipient: "x@badmail.example"}); dec.Action != Reject || dec.Version != 2 {
		t.Errorf("after apply: %+v", dec)
	}
	if _, err := v.Apply(ctx, "admin1", "[default]\naction = \"nope\"\n", ""); err == nil {
		t.Error("invalid policy applied")
	}
	if _, id := e.Current(); id != 2 {
		t.Error("a refused policy changed the active version")
	}
	diff, err := v.Diff(ctx, 1, 2)
	if err != nil || !strings.Contains(diff, "+name = \"blocked\"") {
		t.Errorf("diff: %v\n%s", err, diff)
	}
	id3, err := v.Rollback(ctx, "admin2", 1)
	if err != nil || id3 != 3 {
		t.Fatal(id3, err)
	}
	if dec := e.Decide(Input{Recipient: "x@badmail.example", Facts: &Facts{}}); dec.Action != Portal || dec.Version != 3 {
		t.Errorf("after rollback: %+v", dec)
	}
	hist, _ := st.ListPolicyVersions(ctx)
	if len(hist) != 3 || hist[2].AuthorID != "admin2" || !strings.Contains(hist[2].Note, "rollback to version 1") {
		t.Errorf("history: %+v", hist)
	}
	// Another node applied version 4: Refresh picks it up.
	other := &Versions{Store: st, Engine: &Engine{}, Detectors: detectorNames}
	if _, err := other.Apply(ctx, "admin3", clinicPolicy, "again"); err != nil {
		t.Fatal(err)
	}
	if changed, err := v.Refresh(ctx); !changed || err != nil {
		t.Errorf("refresh: %v %v", changed, err)
	}
}

func TestSenderGroups(t *testing.T) {
	d := mustParse(t, `[groups]
oncology = ["dr.onc@clinic.example", "nurse.onc@clinic.example"]

[[rule]]
name = "oncology-portal-7d"
when.sender_groups = ["oncology"]
then.action = "portal"
then.expiry_days = 7

[default]
action = "portal"
`)
	if dec := d.Evaluate(Input{Sender: "Nurse.Onc@clinic.example", Recipient: "p@example.net", Facts: &Facts{}}); dec.Rule != "oncology-portal-7d" {
		t.Errorf("group member: %+v", dec)
	}
	if dec := d.Evaluate(Input{Sender: "dr.gp@clinic.example", Recipient: "p@example.net", Facts: &Facts{}}); dec.Rule != "default" {
		t.Errorf("not a member: %+v", dec)
	}
	if _, err := Parse([]byte("[[rule]]\nname = \"x\"\nwhen.sender_groups = [\"none\"]\nthen.action = \"portal\"\n[default]\naction = \"portal\"\n"), detectorNames); err == nil || !strings.Contains(err.Error(), "unknown sender group") {
		t.Errorf("unknown group: %v", err)
	}
}
