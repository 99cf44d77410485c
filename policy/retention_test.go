package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const retentionPolicy = `[[rule]]
name = "records"
when.recipient_domains = ["records.example"]
then.action = "portal"
then.expiry_days = 30
then.retain = "6y"

[[rule]]
name = "short"
when.recipient_domains = ["short.example"]
then.action = "portal"
then.expiry_days = 7
then.retain = "14d"

[default]
action = "portal"
expiry_days = 30

[retention]
messages = "180d"
unclaimed_accounts = "45d"
`

func TestRetentionPerRule(t *testing.T) {
	doc, err := Parse([]byte(retentionPolicy), detectorNames)
	if err != nil {
		t.Fatal(err)
	}
	var e Engine
	e.Set(doc, 3)
	for _, c := range []struct {
		rcpt string
		want time.Duration
	}{
		{"p@records.example", 6 * (365*24*time.Hour + 6*time.Hour)},
		{"p@short.example", 14 * 24 * time.Hour},
		{"p@elsewhere.example", 180 * 24 * time.Hour}, // the policy's [retention] messages
	} {
		dec := e.Decide(Input{Sender: "s@clinic.example", Recipient: c.rcpt})
		if got := dec.RetainFor(); got != c.want {
			t.Errorf("%s: retain %s (%q), want %s", c.rcpt, got, dec.Retain, c.want)
		}
		// The decision recorded on the message carries it.
		var rec Decision
		b, _ := json.Marshal(dec)
		if json.Unmarshal(b, &rec); rec.RetainFor() != c.want {
			t.Errorf("%s: recorded decision %s lost the retention", c.rcpt, b)
		}
		// At RCPT time too.
		if dec, _ := e.DecideEnvelope(Input{Recipient: c.rcpt}); dec.RetainFor() != c.want {
			t.Errorf("%s: envelope decision retain %q", c.rcpt, dec.Retain)
		}
	}
	if got := e.UnclaimedFor(); got != 45*24*time.Hour {
		t.Errorf("unclaimed accounts: %s, want 45 days", got)
	}

	// Without [retention]: the read window's end, and 90 days unclaimed.
	plain, err := Parse([]byte(ShippedFor([]string{"clinic.example"})), detectorNames)
	if err != nil {
		t.Fatal(err)
	}
	if dec := plain.Evaluate(Input{Recipient: "p@x.example"}); dec.RetainFor() != 0 || dec.Retain != "" {
		t.Errorf("shipped policy retains %q", dec.Retain)
	}
	if plain.UnclaimedFor() != DefaultUnclaimed {
		t.Errorf("shipped policy: unclaimed %s", plain.UnclaimedFor())
	}
}

func TestRetentionRefusals(t *testing.T) {
	for _, c := range []struct {
		name, policy, want string
	}{
		{"unit", "[default]\naction = \"portal\"\nretain = \"90 days\"\n", `default: retain: period "90 days"`},
		{"shorter than read window", "[[rule]]\nname = \"r\"\nthen.action = \"portal\"\nthen.expiry_days = 30\nthen.retain = \"7d\"\n[default]\naction = \"portal\"\n",
			"line 1: rule 1 (r): retain 7d is shorter than the read window (expiry_days = 30)"},
		{"relay", "[[rule]]\nname = \"in\"\nthen.action = \"relay\"\nthen.retain = \"1y\"\n[default]\naction = \"portal\"\n",
			"rule 1 (in): retain 1y: a relay rule stores no message to keep"},
		{"typo", "[default]\naction = \"portal\"\nretain = \"600y\"\n", `retain: period "600y": too long`},
		{"too long", "[default]\naction = \"portal\"\nretain = \"150y\"\n", "retain 150y: use 1d to 100y"},
		{"section", "[default]\naction = \"portal\"\n\n[retention]\nmessages = \"12h\"\n", "line 5: retention.messages: 12h: use 1d to 100y"},
		{"section unit", "[default]\naction = \"portal\"\n\n[retention]\nunclaimed_accounts = \"three months\"\n", "line 5: retention.unclaimed_accounts: period"},
		{"unknown key", "[default]\naction = \"portal\"\n\n[retention]\naudit = \"1y\"\n", `unknown setting "retention.audit"`},
	} {
		_, err := Parse([]byte(c.policy), detectorNames)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want it to say %q", c.name, err, c.want)
		}
	}
}
