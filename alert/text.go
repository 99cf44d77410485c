package alert

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/web"
)

// The alert texts go by email to the security officer and into the admin
// pages, so they must never carry PHI (DESIGN.md invariant 1). That is
// enforced by construction: every *Text builder below takes only the vetted
// value types id and addr, counts (int), times and durations — never a
// string — and id and addr can be made only by idOf, addrOf and ipKey,
// which let through nothing but identifier-shaped tokens and canonical IP
// addresses. Anything else (an email address, a name, a subject that was
// passed by mistake) becomes a keyed pseudonym ("ref#" + 12 hex digits,
// the same keyed hash logx uses for log lines), so the officer can still
// correlate it with the logs without seeing it. The fixed words of each
// template are the only other text. text_test.go checks all of this on the
// source, so a later builder taking a string fails the tests.

// id is an identifier (user id, account pseudonym, message id, record id)
// vetted for alert text. Make one with idOf only.
type id struct{ s string }

// addr is an IP address (or an IPv6 /64) vetted for alert text. Make one
// with addrOf or ipKey only.
type addr struct{ s string }

func (v id) empty() bool   { return v.s == "" }
func (v addr) empty() bool { return v.s == "" }

// maxIDLen bounds an identifier shown as it is; longer ones are pseudonymised.
const maxIDLen = 64

// idOf vets an identifier: letters, digits and "_-:#" (hex ids, UUIDs,
// "addr#…" pseudonyms) of at most maxIDLen characters pass as they are;
// anything else — notably "@", ".", spaces — is replaced by its pseudonym.
func idOf(v string) id {
	if v == "" {
		return id{}
	}
	if len(v) <= maxIDLen && isIDShaped(v) {
		return id{s: v}
	}
	return id{s: pseudonym(v)}
}

func isIDShaped(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '-' || c == ':' || c == '#':
		default:
			return false
		}
	}
	return true
}

func pseudonym(v string) string { return "ref#" + logx.Pseudonym(v) }

// addrOf vets an IP address ("192.0.2.1", "2001:db8::1", or either with a
// port): it returns the canonical address, or a pseudonym if v is not one.
func addrOf(v string) addr {
	if v == "" {
		return addr{}
	}
	if a, ok := parseIP(v); ok {
		return addr{s: a.String()}
	}
	return addr{s: pseudonym(v)}
}

// ipKey is the unit failures are counted by: the address for IPv4, its /64
// for IPv6 (one client usually holds a whole /64, as in package limiter).
func ipKey(v string) addr {
	a, ok := parseIP(v)
	if !ok {
		return addrOf(v)
	}
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return addr{s: p.String()}
		}
	}
	return addr{s: a.String()}
}

func parseIP(v string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(v); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// stamp formats a time for alert text: UTC, RFC 3339, whole seconds.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// span formats a duration in plain words: "15 minutes", "1 hour", "90 seconds".
func span(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	default:
		return plural(int64((d+time.Second-1)/time.Second), "second")
	}
}

// from renders " from <ip>" or nothing.
func from(ip addr) string {
	if ip.empty() {
		return ""
	}
	return " from " + ip.s
}

// byUser renders " by user <actor>" or nothing.
func byUser(actor id) string {
	if actor.empty() {
		return ""
	}
	return " by user " + actor.s
}

func orUnknown(v id) string {
	if v.empty() {
		return "unknown"
	}
	return v.s
}

func lockoutText(account id, ip addr, at time.Time) string {
	return fmt.Sprintf("Account %s was locked out after repeated failed sign-ins at %s%s.",
		orUnknown(account), stamp(at), lastAttempt(ip))
}

func lastAttempt(ip addr) string {
	if ip.empty() {
		return ""
	}
	return "; the last attempt came from " + ip.s
}

func ipFailuresText(ip addr, n int, window time.Duration, first, at time.Time) string {
	return fmt.Sprintf("%d failed sign-ins from %s within %s (from %s to %s).",
		n, ip.s, span(window), stamp(first), stamp(at))
}

func breakGlassText(message, actor id, ip addr, at time.Time) string {
	return fmt.Sprintf("Break-glass access to message %s%s%s at %s.",
		orUnknown(message), byUser(actor), from(ip), stamp(at))
}

func adminGrantText(user, actor id, ip addr, at time.Time) string {
	return fmt.Sprintf("User %s was given the admin role%s%s at %s.",
		orUnknown(user), byUser(actor), from(ip), stamp(at))
}

func openVolumeText(actor id, n int, window time.Duration, first, at time.Time, ip addr) string {
	return fmt.Sprintf("User %s opened or downloaded messages %s within %s (from %s to %s)%s.",
		orUnknown(actor), web.Count(n, "time"), span(window), stamp(first), stamp(at), latestFrom(ip))
}

func latestFrom(ip addr) string {
	if ip.empty() {
		return ""
	}
	return "; the latest came from " + ip.s
}

func redisOutageText(at time.Time) string {
	return fmt.Sprintf("Redis stopped answering at %s; portal sign-in and sessions answer 503 until it returns, and SMTP intake continues.", stamp(at))
}

func auditVerifyText(record, actor id, ip addr, at time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Audit trail verification failed at %s", stamp(at))
	if !record.empty() {
		fmt.Fprintf(&b, " (first failing record %s)", record.s)
	}
	if !actor.empty() || !ip.empty() {
		fmt.Fprintf(&b, "; the check was run%s%s", byUser(actor), from(ip))
	}
	b.WriteString(".")
	return b.String()
}

// summaryText: "37 more alerts in the last 15 minutes: 30 ip-failures,
// 7 lockout (from … to …)." Kinds are listed by count, largest first.
func summaryText(counts [numKinds]int, window time.Duration, start, end time.Time) string {
	total := 0
	for _, n := range counts {
		total += n
	}
	order := make([]kind, 0, numKinds)
	for k := kind(0); k < numKinds; k++ {
		if counts[k] > 0 {
			order = append(order, k)
		}
	}
	// Insertion sort: at most numKinds entries; stable on kind order.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && counts[order[j]] > counts[order[j-1]]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[k], kindNames[k])
	}
	noun := "alerts"
	if total == 1 {
		noun = "alert"
	}
	return fmt.Sprintf("%d more %s in the last %s: %s (from %s to %s). The full list is in the admin pages.",
		total, noun, span(window), strings.Join(parts, ", "), stamp(start), stamp(end))
}
