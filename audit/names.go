package audit

import (
	"encoding/json"
	"sort"
	"strings"
)

// actionNames are the trail's actions in the words people use (issue
// 13.4). The one list: the portal pages, the JSON API ("action_name") and
// the audit search's filter bar all read it, so "message.accept" is
// "Message accepted" everywhere. The stored action stays the stable key.
var actionNames = map[string]string{
	"account.claim":            "Account claimed",
	"account.claim.new-link":   "New claim link sent",
	"notice.lookup":            "Notice reference looked up",
	"account.notify-prefs":     "Notice channels changed",
	"account.recover":          "Messages recovered with the escrow key",
	"account.reset":            "Password reset",
	"account.reset.request":    "Password reset asked for",
	"audit.export":             "Audit trail exported",
	"audit.search":             "Audit trail searched",
	"audit.verify":             "Audit chain verified",
	"auth.2fa":                 "Second factor entered",
	"auth.2fa.enrol":           "Authenticator app set up",
	"auth.lockout":             "Account locked after failed sign-ins",
	"auth.login":               "Signed in",
	"auth.logoff":              "Signed out",
	"auth.reauth":              "Sign-in confirmed again",
	"auth.recovery-codes":      "Recovery codes replaced",
	"backup.create":            "Backup made",
	"backup.restore":           "Backup restored",
	"backup.drill":             "Restore drill run",
	"account.dispose":          "Unclaimed account deleted",
	"retention.purge":          "Expired material disposed of",
	"compliance.report":        "Compliance report viewed",
	"breakglass.open":          "Emergency access to a message",
	"key.register":             "Recipient key registered",
	"key.remove":               "Recipient key removed",
	"message.accept":           "Message accepted",
	"message.attachment":       "Attachment downloaded",
	"message.content":          "Message text shown (formatted part)",
	"message.history":          "Message history viewed",
	"message.passcode":         "Passcode entered",
	"message.pgp":              "Sent encrypted (PGP)",
	"message.purge":            "Message content deleted",
	"message.read":             "Message opened",
	"message.recall":           "Message recalled",
	"message.reject":           "Message refused by policy",
	"message.relay":            "Relayed onward",
	"message.reply":            "Secure reply sent",
	"notice.resend":            "Notice sent again",
	"notice.retry":             "Failed notice retried",
	"notice.send":              "Notice sent",
	"policy.apply":             "Policy changed",
	"policy.rollback":          "Policy rolled back",
	"push.subscribe":           "Device notifications turned on",
	"push.unsubscribe":         "Device notifications removed",
	"quarantine.approve":       "Held message approved",
	"quarantine.deny":          "Held message denied",
	"quarantine.preview":       "Held message previewed",
	"sender.allow_from":        "Allowed senders in force",
	"service.redis":            "Shared cache (Redis) state",
	"session.tampered":         "Tampered session refused",
	"smtp.auth":                "Mail client signed in",
	"smtp.connect":             "Mail client connected",
	"smtp.refuse":              "Mail submission refused",
	"user.app-password.create": "App password created",
	"user.app-password.revoke": "App password revoked",
	"user.create":              "Account created",
	"user.disable":             "Account disabled",
	"user.enable":              "Account enabled",
	"user.list":                "Accounts listed",
	"user.role":                "Role changed",
	"user.role.admin":          "Admin role granted",
	"user.signout":             "Signed out everywhere by an admin",
	"user.unlock":              "Account unlocked",
}

// ActionName is action in plain words; an action without a name (a newer
// one) reads as its dotted words, never as nothing.
func ActionName(action string) string {
	if n, ok := actionNames[action]; ok {
		return n
	}
	if action == "" {
		return ""
	}
	s := strings.NewReplacer(".", " ", "_", " ", "-", " ").Replace(action)
	return strings.ToUpper(s[:1]) + s[1:]
}

// outcomeNames are the outcomes in words.
var outcomeNames = map[string]string{
	"ok": "done", "failed": "failed", "denied": "refused", "refused": "refused",
	"locked": "refused: account locked", "throttled": "refused: too many attempts", "queued": "queued",
}

// OutcomeName is an entry's outcome in words.
func OutcomeName(outcome string) string {
	if n, ok := outcomeNames[outcome]; ok {
		return n
	}
	return outcome
}

// ActionChoice is one entry of the audit search's "what happened" list.
type ActionChoice struct {
	Value string // what Query.Action takes: an action, or "group.*"
	Label string
}

// actionGroups name the prefixes an admin filters by most.
var actionGroups = []ActionChoice{
	{"auth.*", "Any sign-in event"},
	{"message.*", "Any message event"},
	{"quarantine.*", "Any quarantine decision"},
	{"user.*", "Any account change"},
	{"policy.*", "Any policy change"},
	{"audit.*", "Any audit trail use"},
}

// ActionChoices lists the groups, then every named action by its words.
func ActionChoices() []ActionChoice {
	out := append([]ActionChoice(nil), actionGroups...)
	named := make([]ActionChoice, 0, len(actionNames))
	for k, l := range actionNames {
		named = append(named, ActionChoice{k, l})
	}
	sort.Slice(named, func(i, j int) bool { return named[i].Label < named[j].Label })
	return append(out, named...)
}

// MarshalJSON writes an entry with "action_name" (ActionName's words)
// beside the stable "action", so the JSON API and JSON exports name an
// action as the pages do. The MAC does not cover it (chain.go encodes the
// stored fields only), and reading JSON back ignores it.
func (e Entry) MarshalJSON() ([]byte, error) {
	type stored Entry // without this method
	return json.Marshal(struct {
		stored
		ActionName string `json:"action_name"`
	}{stored(e), ActionName(e.Action)})
}
