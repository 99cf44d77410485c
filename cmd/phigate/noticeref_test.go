package main

import (
	"regexp"
	"strings"
	"testing"
)

// Issue 13.9: staff check a reference a patient reads out on the phone:
// `phigate notices reference` finds the notice (in any case, with or
// without the dash) with its recipient and times, says plainly when no
// notice has the reference, and every look-up is audited.
func TestCLINoticeReference(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	secret := addStaff(t, dir, staffEmail, "laptop")
	const patient = "phone.check@example.net"
	if err := submit(p.SMTP, staffEmail, secret, newMsg(staffEmail, patient, "ref"), nil); err != nil {
		t.Fatalf("send: %v\n%s", err, p.tail())
	}
	n := waitNotices(t, p, dir, []string{patient}, 1)[patient][0]
	m := regexp.MustCompile(`Reference: ([2-9A-Z]{3})-([2-9A-Z]{3})`).FindSubmatch(n.raw)
	if m == nil {
		t.Fatalf("no reference in the notice:\n%s", n.raw)
	}
	ref := string(m[1]) + "-" + string(m[2])
	p.stop()

	for _, typed := range []string{ref, strings.ToLower(string(m[1]) + " " + string(m[2]))} {
		r := runCLI(t, "", "notices", "reference", typed, "--data", dir)
		if r.code != 0 || !strings.Contains(r.stdout, ref+"\tnew message\tto "+patient+"\tmade ") || !strings.Contains(r.stdout, "\tsent ") {
			t.Errorf("notices reference %q: exit %d\n%s%s", typed, r.code, r.stdout, r.stderr)
		}
	}
	other := "ZZZ-ZZZ"
	if ref == other {
		other = "YYY-YYY"
	}
	r := runCLI(t, "", "notices", "reference", "--data", dir, other)
	if r.code != 1 || !strings.Contains(r.stdout, "no notice has the reference "+other+": an email showing it did not come from this gateway") {
		t.Errorf("unknown reference: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "notices", "reference", "--data", dir, "K7P-4Q0"); r.code != 2 || !strings.Contains(r.stderr, "is not a notice reference") {
		t.Errorf("a code with a look-alike: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, "", "audit", "export", "--data", dir, "--format", "csv", "--action", "notice.lookup")
	if r.code != 0 || strings.Count(r.stdout, "notice.lookup") != 3 {
		t.Errorf("notice.lookup entries: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
