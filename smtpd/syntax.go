package smtpd

import (
	"bytes"
	"net/netip"
	"strings"
)

// validHelo reports whether name is what RFC 5321 4.1.1.1 allows as the
// EHLO/HELO argument: a Domain (4.1.2: letters, digits and hyphens, labels
// of 1-63 characters that start and end with a letter or digit, at most 255
// in all) or an address literal (4.1.3: [IPv4] or [IPv6:...]).
// Underscores are let through: some Windows hosts have them in their names,
// and refusing those clients would stop a clinic's mail for no safety gain.
func validHelo(name string) bool {
	if strings.HasPrefix(name, "[") {
		return validAddrLiteral(name)
	}
	if name == "" || len(name) > 255 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validAddrLiteral accepts "[192.0.2.1]" and "[IPv6:2001:db8::1]" (RFC
// 5321 4.1.3); general address literals name nothing we could check.
func validAddrLiteral(s string) bool {
	inner, ok := strings.CutSuffix(strings.TrimPrefix(s, "["), "]")
	if !ok {
		return false
	}
	if v6, ok := cutPrefixFold(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(inner)
	return err == nil && a.Is4()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// plainAddr reports whether a RCPT path is a plain local@domain address:
// no %-hack or bang path in the local part (old source routing, which
// onward MTAs may still honour), no quoted local part (which can hide "@"
// and routing characters), and no address literal as the domain (RFC 5321
// 4.1.3; it would bypass domain-based policy). Everything else is left to
// the address parser.
func plainAddr(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return true // the parser refuses it with its own reply
	}
	local, domain := addr[:at], addr[at+1:]
	return !strings.ContainsAny(local, `%!"\`) && !strings.HasPrefix(domain, "[")
}

// hasBareNewline reports whether msg has a CR not followed by LF or an LF
// not preceded by CR. RFC 5321 2.3.8 allows them only as CRLF; other
// servers read them differently, which is what SMTP smuggling exploits.
func hasBareNewline(msg []byte) bool {
	for i := bytes.IndexAny(msg, "\r\n"); i >= 0; {
		if msg[i] == '\n' || i+1 >= len(msg) || msg[i+1] != '\n' {
			return true
		}
		next := bytes.IndexAny(msg[i+2:], "\r\n")
		if next < 0 {
			return false
		}
		i += 2 + next
	}
	return false
}
