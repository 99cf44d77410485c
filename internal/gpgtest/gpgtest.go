// Package gpgtest drives GnuPG in a throwaway home, for the interop tests
// that check what we make against what gpg accepts.
package gpgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/testtool"
)

// Home is one GNUPGHOME for one test.
type Home struct {
	t    testing.TB
	bin  string
	args []string
	// Dir is the home directory (gpg writes revocation certificates under
	// Dir/openpgp-revocs.d).
	Dir string
}

// New makes a throwaway GNUPGHOME and stops its agent when the test ends
// (by home, never by process name). args go before every command's own,
// e.g. "--pinentry-mode", "loopback", "--passphrase", "" to make keys
// without a passphrase.
func New(t testing.TB, args ...string) *Home {
	t.Helper()
	bin := testtool.Need(t, "gpg")
	// Short path: gpg-agent's socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if gc, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(gc, "--kill", "gpg-agent")
			cmd.Env = append(os.Environ(), "GNUPGHOME="+dir)
			_ = cmd.Run()
		}
		os.RemoveAll(dir)
	})
	return &Home{t: t, bin: bin, args: args, Dir: dir}
}

// Run feeds stdin to gpg and returns its stdout and its --status-file
// output (the machine-readable "[GNUPG:] ..." lines).
func (h *Home) Run(stdin []byte, args ...string) (stdout, status string, err error) {
	statusFile := filepath.Join(h.Dir, "status")
	full := append([]string{"--homedir", h.Dir, "--batch", "--no-tty", "--status-file", statusFile}, h.args...)
	cmd := exec.Command(h.bin, append(full, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	st, _ := os.ReadFile(statusFile)
	if err != nil {
		err = fmt.Errorf("gpg %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), string(st), err
}

// MustRun is Run that fails the test on an error.
func (h *Home) MustRun(stdin []byte, args ...string) (stdout, status string) {
	h.t.Helper()
	out, st, err := h.Run(stdin, args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out, st
}

// GenKey runs --quick-gen-key and returns the new key's fingerprint.
func (h *Home) GenKey(uid, algo, usage, expire string) string {
	h.t.Helper()
	_, st := h.MustRun(nil, "--quick-gen-key", uid, algo, usage, expire)
	for _, l := range strings.Split(st, "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[1] == "KEY_CREATED" {
			return f[3]
		}
	}
	h.t.Fatalf("no KEY_CREATED in gpg status:\n%s", st)
	return ""
}

// Export returns the armored public key fpr.
func (h *Home) Export(fpr string) []byte {
	h.t.Helper()
	out, _ := h.MustRun(nil, "--armor", "--export", fpr)
	if !strings.Contains(out, "BEGIN PGP PUBLIC KEY BLOCK") {
		h.t.Fatalf("gpg exported nothing for %s", fpr)
	}
	return []byte(out)
}
