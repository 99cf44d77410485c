package main

import (
	"strings"
	"testing"
	"time"
)

// TestNoticeStatesClaimLinkLifetime: a new recipient's notice gives the
// claim link's own end (portal.claim_ttl, 7 days by default) beside the
// message's (portal.message_expiry, 30 days), so it never promises the
// link the message's lifetime.
func TestNoticeStatesClaimLinkLifetime(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	secret := addStaff(t, dir, staffEmail, "laptop")
	const patient = "link.days@example.net"
	before := time.Now().UTC()
	if err := submit(p.SMTP, staffEmail, secret, newMsg(staffEmail, patient, "link"), nil); err != nil {
		t.Fatalf("send: %v\n%s", err, p.tail())
	}
	n := waitNotices(t, p, dir, []string{patient}, 1)[patient][0]
	after := time.Now().UTC()
	if n.token == "" {
		t.Fatalf("the first notice to a new recipient has no claim link:\n%s", n.raw)
	}
	// Undo quoted-printable soft line breaks, as readNotices does.
	body := strings.NewReplacer("=\r\n", "", "=\n", "", "\r\n", "\n").Replace(string(n.raw))
	// The day as the notice writes it (web.When, as the portal's pages:
	// issue 13.4); the test may straddle midnight, so either end's day is
	// right.
	day := func(d time.Duration) []string {
		return []string{before.Add(d).Format("2 Jan 2006"), after.Add(d).Format("2 Jan 2006")}
	}
	says := func(prefix string, days []string) bool {
		for _, d := range days {
			if strings.Contains(body, prefix+d) {
				return true
			}
		}
		return false
	}
	if !says("This link works until ", day(7*24*time.Hour)) {
		t.Errorf("notice lacks the claim link's end (%v):\n%s", day(7*24*time.Hour), body)
	}
	if !says("The message can be read until ", day(30*24*time.Hour)) {
		t.Errorf("notice lacks the message's end (%v):\n%s", day(30*24*time.Hour), body)
	}
}
