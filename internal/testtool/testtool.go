// Package testtool finds the external programs tests drive (gpg, swaks,
// chromium, postfix...).
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Need returns the path of an external program a test drives. Outside CI a
// missing tool skips the test; in CI (CI=true) it fails it, because .ci/run
// installs every tool the suite needs and a silent skip would hide a broken
// set-up.
func Need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run should have installed it", name)
	}
	t.Skipf("%s not installed (run .ci/run, or apt-get install it)", name)
	return ""
}
