// Package policy decides, per recipient, how a message is delivered. This is
// the one place that decision lives; the rule engine of issue #4 replaces
// Default behind the same Decider interface.
package policy

import (
	"strings"
)

type Action string

const (
	Portal     Action = "portal"
	PGP        Action = "pgp"
	Relay      Action = "relay"
	Quarantine Action = "quarantine"
	Reject     Action = "reject"
)

// Decision is the outcome for one recipient. Reason is safe to show the
// sender (no PHI); Rule names the rule that matched, for the log.
type Decision struct {
	Action Action
	Rule   string
	Reason string
}

// Input is what a decision may look at.
type Input struct {
	Sender    string
	Recipient string
}

type Decider interface {
	Decide(in Input) Decision
}

// Default is the shipped policy of issue #2: the organisation's own domains
// are relayed to the smarthost, everyone else gets the portal.
type Default struct {
	OrgDomains []string
}

func (d Default) Decide(in Input) Decision {
	if d.IsOrgAddress(in.Recipient) {
		return Decision{Action: Relay, Rule: "org-domains"}
	}
	return Decision{Action: Portal, Rule: "default-portal"}
}

// IsOrgAddress reports whether addr is in one of the organisation's domains
// (exact match; subdomains must be listed).
func (d Default) IsOrgAddress(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	dom := strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
	for _, o := range d.OrgDomains {
		// Configured domains may carry case or a trailing dot too.
		if dom != "" && dom == strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), ".")) {
			return true
		}
	}
	return false
}
