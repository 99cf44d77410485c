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
// Detectors records which detectors fired and how often, never the values.
type Decision struct {
	Action    Action         `json:"action"`
	Rule      string         `json:"rule"`
	Reason    string         `json:"reason,omitempty"`
	Then      Then           `json:"-"`
	Detectors map[string]int `json:"detectors,omitempty"`
	Fallback  bool           `json:"fallback,omitempty"` // pgp without a usable key
	// Reply options of a portal decision, kept on the message.
	NoReply       bool  `json:"no_reply,omitempty"`
	ReplyMaxBytes int64 `json:"reply_max_bytes,omitempty"`
	NoDownload    bool  `json:"no_download,omitempty"` // attachments are listed but not downloadable
	Require2FA    bool  `json:"require_2fa,omitempty"` // reading needs a second factor in this session
	Passcode      bool  `json:"passcode,omitempty"`    // first access needs a passcode given out of band
	Version       int64 `json:"version"`
	// Retain is the stored message's lifetime ("90d"; RetainFor), from its
	// rule or the policy's [retention]; "" keeps it to its read window's end.
	Retain string `json:"retain,omitempty"`
}

// Input is what a decision may look at.
type Input struct {
	Sender          string
	SenderRole      string
	Recipient       string
	RecipientHasKey bool
	Facts           *Facts // nil before DATA
}

type Decider interface {
	Decide(in Input) Decision
	// DecideEnvelope decides at RCPT time; final is false when content
	// could still change the outcome.
	DecideEnvelope(in Input) (Decision, bool)
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

func (d Default) DecideEnvelope(in Input) (Decision, bool) { return d.Decide(in), true }

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
