package policy

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Document is a whole data-sharing policy: an ordered list of rules (first
// match wins) and a default rule at the end. It is kept as TOML text, which
// is what admins edit, what versions store, and what diffs compare.
type Document struct {
	Detectors DetectorSettings `toml:"detectors"`
	// Groups name lists of sender addresses for rules' sender_groups
	// (e.g. oncology = ["dr.a@clinic.example", "dr.b@clinic.example"]).
	Groups  map[string][]string `toml:"groups"`
	Rules   []Rule              `toml:"rule"`
	Default Then                `toml:"default"`
	// Retention: message and unclaimed-account lifetimes (retention.go).
	Retention Retention `toml:"retention"`
}

// DetectorSettings configure the content detectors (package detect).
type DetectorSettings struct {
	MRNPattern string   `toml:"mrn_pattern"`
	Keywords   []string `toml:"keywords"`
}

type Rule struct {
	Name string `toml:"name"`
	When When   `toml:"when"`
	Then Then   `toml:"then"`
}

// When holds a rule's conditions; all that are set must hold, and unset ones
// match anything.
type When struct {
	Senders          []string       `toml:"senders"`           // addresses
	SenderGroups     []string       `toml:"sender_groups"`     // names from [groups]
	SenderRoles      []string       `toml:"sender_roles"`      // staff, admin, security
	Recipients       []string       `toml:"recipients"`        // addresses
	RecipientDomains []string       `toml:"recipient_domains"` // "lab.example" or "*.example.org"
	RecipientHasKey  *bool          `toml:"recipient_has_key"` // a registered OpenPGP key
	Detectors        map[string]int `toml:"detectors"`         // any detector reaching its count
	SubjectTag       string         `toml:"subject_tag"`       // e.g. "[secure]", case-insensitive
	HasAttachment    *bool          `toml:"has_attachment"`
	AttachmentTypes  []string       `toml:"attachment_types"` // "application/pdf", ".docx"
	AttachmentOver   int64          `toml:"attachment_over"`  // bytes: any attachment larger
}

// Then is a rule's action with its options.
type Then struct {
	Action Action `toml:"action"`
	// portal options
	ExpiryDays    int   `toml:"expiry_days"`
	AllowReply    *bool `toml:"allow_reply"`     // default: yes
	ReplyMaxBytes int64 `toml:"reply_max_bytes"` // default 10 MB
	AllowDownload *bool `toml:"allow_download"`
	Require2FA    bool  `toml:"require_2fa"`
	Passcode      bool  `toml:"passcode"`
	// Retain is how long the stored message is kept ("90d", "6y"):
	// it is disposed of then (retention.go).
	Retain string `toml:"retain"`
	// pgp option: what to do when the recipient has no usable key.
	Fallback Action `toml:"fallback"`
	// reject options: the SMTP reply the sender sees.
	Code   int    `toml:"code"`
	Reason string `toml:"reason"`
}

// Shipped is the default policy (issue #4): the organisation's domains are
// relayed, recipients with a registered key get PGP/MIME, everyone else the
// portal with a 30-day expiry. %s is replaced by the org's domains.
const Shipped = `# phigate data-sharing policy. Rules are tried in order; the first whose
# conditions all hold decides; [default] decides when none does.

[detectors]
mrn_pattern = ""
keywords = []

[[rule]]
name = "internal"
when.recipient_domains = %s
then.action = "relay"

[[rule]]
name = "recipient-key"
when.recipient_has_key = true
then.action = "pgp"
then.fallback = "portal"

[default]
action = "portal"
expiry_days = 30
`

// ShippedFor returns the shipped policy for the organisation's domains.
func ShippedFor(orgDomains []string) string {
	q := make([]string, len(orgDomains))
	for i, d := range orgDomains {
		q[i] = fmt.Sprintf("%q", d)
	}
	return fmt.Sprintf(Shipped, "["+strings.Join(q, ", ")+"]")
}

// ValidationError names the line of the rule (or setting) that is wrong.
type ValidationError struct {
	Line int
	Msg  string
}

func (e *ValidationError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Parse reads and validates a policy document; detectorNames are the known
// detectors (package detect). Errors name the line.
func Parse(text []byte, detectorNames []string) (*Document, error) {
	var d Document
	md, err := toml.NewDecoder(bytes.NewReader(text)).Decode(&d)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &ValidationError{Line: pe.Position.Line, Msg: pe.Message}
		}
		return nil, &ValidationError{Msg: err.Error()}
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, &ValidationError{Line: keyLine(text, und[0]), Msg: fmt.Sprintf("unknown setting %q", und[0].String())}
	}
	ruleLines := headerLines(text, "[[rule]]")
	var errs []error
	add := func(i int, format string, a ...any) {
		line := 0
		if i >= 0 && i < len(ruleLines) {
			line = ruleLines[i]
		}
		name := "default"
		if i >= 0 {
			name = fmt.Sprintf("rule %d", i+1)
			if d.Rules[i].Name != "" {
				name += fmt.Sprintf(" (%s)", d.Rules[i].Name)
			}
		}
		errs = append(errs, &ValidationError{Line: line, Msg: name + ": " + fmt.Sprintf(format, a...)})
	}
	if d.Detectors.MRNPattern != "" {
		if _, err := regexp.Compile(d.Detectors.MRNPattern); err != nil {
			errs = append(errs, &ValidationError{Line: findLine(text, "mrn_pattern"), Msg: "detectors.mrn_pattern: " + err.Error()})
		}
	}
	names := map[string]bool{}
	for i, r := range d.Rules {
		if r.Name == "" {
			add(i, "give the rule a name")
		} else if names[r.Name] {
			add(i, "another rule is already called %q", r.Name)
		}
		names[r.Name] = true
		for det, n := range r.When.Detectors {
			if !slices.Contains(detectorNames, det) {
				add(i, "unknown detector %q (known: %s)", det, strings.Join(detectorNames, ", "))
			}
			if n < 1 {
				add(i, "detector %q needs a count of at least 1", det)
			}
		}
		for _, g := range r.When.SenderGroups {
			if _, ok := d.Groups[g]; !ok {
				add(i, "unknown sender group %q (define it under [groups])", g)
			}
		}
		for _, role := range r.When.SenderRoles {
			if !slices.Contains([]string{"staff", "admin", "security"}, role) {
				add(i, "unknown sender role %q", role)
			}
		}
		checkThen(r.Then, func(f string, a ...any) { add(i, f, a...) })
	}
	if d.Default.Action == "" {
		add(-1, "[default] needs an action")
	}
	checkThen(d.Default, func(f string, a ...any) { add(-1, f, a...) })
	errs = append(errs, d.Retention.check(func(k string) int { return findLine(text, k) })...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &d, nil
}

func checkThen(t Then, bad func(string, ...any)) {
	switch t.Action {
	case Portal, Relay, Quarantine:
	case PGP:
		if t.Fallback != "" && t.Fallback != Portal && t.Fallback != Reject {
			bad("fallback must be portal or reject, not %q", t.Fallback)
		}
	case Reject:
		if t.Code != 0 && (t.Code < 500 || t.Code > 599) {
			bad("reject code %d: use a permanent 5xx code", t.Code)
		}
	case "":
		bad("needs an action (portal, pgp, relay, quarantine or reject)")
	default:
		bad("unknown action %q (portal, pgp, relay, quarantine or reject)", t.Action)
	}
	if t.ExpiryDays < 0 || t.ExpiryDays > 3650 {
		bad("expiry_days %d: use 1 to 3650", t.ExpiryDays)
	}
	checkRetain(t, bad)
}

// headerLines returns the 1-based line of each occurrence of header.
func headerLines(text []byte, header string) []int {
	var out []int
	for i, l := range bytes.Split(text, []byte("\n")) {
		if bytes.Equal(bytes.TrimSpace(l), []byte(header)) {
			out = append(out, i+1)
		}
	}
	return out
}

func findLine(text []byte, key string) int {
	for i, l := range bytes.Split(text, []byte("\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(l), []byte(key)) {
			return i + 1
		}
	}
	return 0
}

func keyLine(text []byte, k toml.Key) int {
	if len(k) == 0 {
		return 0
	}
	return findLine(text, k[len(k)-1])
}
