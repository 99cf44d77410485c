package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/phigate/phigate/compliance"
)

// TestComplianceReportCLI: on a fresh `serve --dev` data folder the report
// fails (exit 1) on exactly what has not happened yet (an audit
// verification, a backup and a restore drill) and on the tests' cheap
// password hashing (childEnv); after `phigate audit verify` and `phigate
// backup create` only the drill and the hashing are left failing. Text and
// JSON say the same.
func TestComplianceReportCLI(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	p.stop()

	failing := func(args ...string) []string {
		t.Helper()
		r := runCLI(t, "", append([]string{"compliance", "report", "--json", "--data", dir}, args...)...)
		var rep compliance.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("JSON: %v\n%s%s", err, r.stdout, r.stderr)
		}
		var names []string
		for _, s := range rep.Safeguards {
			for _, c := range s.Checks {
				if c.Status == compliance.Fail {
					names = append(names, s.Rule+" "+c.Name)
				}
			}
		}
		if (r.code == 0) != (len(names) == 0) || (r.code != 0 && r.code != 1) || rep.OK != (len(names) == 0) {
			t.Errorf("exit %d, OK %v with failing %v", r.code, rep.OK, names)
		}
		return names
	}
	got := failing()
	const hashing = "164.308(a)(5)(ii)(D) Argon2id at least 19456 KiB and 2 passes"
	want := []string{"164.312(b) last audit verification passed within 48 hours", hashing,
		"164.308(a)(7) last backup succeeded within twice backup.interval",
		"164.308(a)(7) last restore drill succeeded within a year"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fresh data folder fails %q\nwant %q", got, want)
	}
	text := runCLI(t, "", "compliance", "report", "--data", dir)
	if text.code != 1 || !strings.Contains(text.stdout, "FAIL: 4 checks failed") ||
		!strings.Contains(text.stdout, "[fail] last backup succeeded within twice backup.interval: no backup recorded") {
		t.Errorf("text report: exit %d\n%s%s", text.code, text.stdout, text.stderr)
	}

	for _, args := range [][]string{{"audit", "verify", "--data", dir}, {"backup", "create", "--data", dir}} {
		if r := runCLI(t, "", args...); r.code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	if got := failing(); strings.Join(got, "|") != hashing+"|"+want[3] {
		t.Errorf("after a verification and a backup, failing %q, want only the drill", got)
	}
	if r := runCLI(t, "", "compliance", "nonsense"); r.code != 2 {
		t.Errorf("bad usage: exit %d", r.code)
	}
}
