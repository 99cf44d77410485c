package policy

import "testing"

func TestDefaultDecide(t *testing.T) {
	d := Default{OrgDomains: []string{"clinic.example", "lab.clinic.example"}}
	cases := []struct {
		rcpt string
		want Action
		rule string
	}{
		{"dr.lee@clinic.example", Relay, "org-domains"},
		{"Dr.Lee@CLINIC.EXAMPLE", Relay, "org-domains"},
		{"dr.lee@Clinic.Example.", Relay, "org-domains"},
		{"tech@lab.clinic.example", Relay, "org-domains"},
		{"tech@LAB.clinic.example.", Relay, "org-domains"},
		{"\"odd@local\"@clinic.example", Relay, "org-domains"},
		// Subdomains are not the organisation unless listed.
		{"x@billing.clinic.example", Portal, "default-portal"},
		{"x@sub.lab.clinic.example", Portal, "default-portal"},
		// Look-alikes and everyone else get the portal.
		{"pat@example.net", Portal, "default-portal"},
		{"pat@clinic.example.net", Portal, "default-portal"},
		{"pat@evilclinic.example", Portal, "default-portal"},
		{"pat@clinic.example..", Portal, "default-portal"},
		{"clinic.example@example.net", Portal, "default-portal"},
		{"a@clinic.example@example.net", Portal, "default-portal"},
		// No @ at all, or nothing after it: never an org address.
		{"clinic.example", Portal, "default-portal"},
		{"postmaster", Portal, "default-portal"},
		{"", Portal, "default-portal"},
		{"x@", Portal, "default-portal"},
		{"@", Portal, "default-portal"},
	}
	for _, c := range cases {
		got := d.Decide(Input{Sender: "dr.lee@clinic.example", Recipient: c.rcpt})
		if got.Action != c.want || got.Rule != c.rule {
			t.Errorf("Decide(%q) = %+v, want %s by %s", c.rcpt, got, c.want, c.rule)
		}
		if got.Reason != "" && got.Action != Reject {
			t.Errorf("Decide(%q): unexpected reason %q", c.rcpt, got.Reason)
		}
	}
}

func TestDefaultNoDomains(t *testing.T) {
	var d Default
	for _, r := range []string{"a@clinic.example", "a@", "", "@"} {
		if got := d.Decide(Input{Recipient: r}); got.Action != Portal {
			t.Errorf("no org domains: Decide(%q) = %+v", r, got)
		}
	}
}

func TestIsOrgAddress(t *testing.T) {
	d := Default{OrgDomains: []string{"clinic.example"}}
	for addr, want := range map[string]bool{
		"a@clinic.example":   true,
		"a@CLINIC.example.":  true,
		"a@b.clinic.example": false,
		"a@clinic.example.x": false,
		"clinic.example":     false,
		"":                   false,
	} {
		if got := d.IsOrgAddress(addr); got != want {
			t.Errorf("IsOrgAddress(%q) = %v, want %v", addr, got, want)
		}
	}
}

// The decider is used through its interface.
var _ Decider = Default{}

// Configured domains are matched however they were written.
func TestConfiguredDomainForms(t *testing.T) {
	d := Default{OrgDomains: []string{"Clinic.Example.", " lab.example "}}
	for _, r := range []string{"a@clinic.example", "a@CLINIC.EXAMPLE.", "b@lab.example"} {
		if got := d.Decide(Input{Recipient: r}); got.Action != Relay {
			t.Errorf("Decide(%q) = %+v, want relay", r, got)
		}
	}
	// An empty configured domain never matches an address with nothing after @.
	d = Default{OrgDomains: []string{""}}
	for _, r := range []string{"a@", "a@.", "@"} {
		if got := d.Decide(Input{Recipient: r}); got.Action != Portal {
			t.Errorf("empty domain: Decide(%q) = %+v, want portal", r, got)
		}
	}
}
