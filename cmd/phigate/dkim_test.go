package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// A notice the running gateway wrote verifies with go-msgauth's verifier
// against the records `phigate dkim show` prints (its DNS queries answered
// from that output, as a resolver would once the records are published):
// both the RSA and the Ed25519 signature.
func TestDKIMShowVerifiesNotice(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	const staffAddr = "dr.dkim@clinic.example"
	secret := addStaff(t, dir, staffAddr, "laptop")
	const rcpt = "dkim.patient@example.net"
	if err := submit(p.SMTP, staffAddr, secret, newMsg(staffAddr, rcpt, "dkim"), nil); err != nil {
		t.Fatal(err)
	}
	notices := waitNotices(t, p, dir, []string{rcpt}, 1)[rcpt]
	p.stop()

	r := runCLI(t, "", "dkim", "show", "--data", dir)
	if r.code != 0 {
		t.Fatalf("dkim show: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	published := map[string]string{} // name -> value, as printed
	var name string
	for _, line := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "name:  "); ok {
			name = v
		}
		if v, ok := strings.CutPrefix(line, "value: "); ok {
			published[name] = v
		}
	}
	if len(published) != 2 || published["phigate-rsa._domainkey.clinic.example"] == "" ||
		published["phigate-ed25519._domainkey.clinic.example"] == "" {
		t.Fatalf("dkim show printed %v:\n%s", published, r.stdout)
	}
	lookup := func(domain string) ([]string, error) {
		if v, ok := published[domain]; ok {
			return []string{v}, nil
		}
		return nil, errors.New("NXDOMAIN " + domain)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(notices[0].raw), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("%d signatures on the notice, want 2", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "clinic.example" {
			t.Errorf("signature by %s: %v", v.Domain, v.Err)
		}
	}
	// The same records come back on a second run: the key is kept.
	if again := runCLI(t, "", "dkim", "show", "--data", dir); again.stdout != r.stdout {
		t.Errorf("dkim show changed between runs:\n%s\n%s", r.stdout, again.stdout)
	}
}

// A template that uses a field other than the PHI-free ones stops the
// gateway at start and fails `phigate notices check-templates`, both
// naming the file, the line and the field; a good folder passes.
func TestNoticeTemplatesCheckedAtStart(t *testing.T) {
	tdir := t.TempDir()
	bad := "{{.Org}} has sent you a secure message.\nAbout: {{.Subject}}\n"
	if err := os.WriteFile(filepath.Join(tdir, "new-message.txt"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "notices", "check-templates", "--dir", tdir)
	if r.code != 1 || !strings.Contains(r.stderr, "new-message.txt:2:") || !strings.Contains(r.stderr, "field Subject") {
		t.Fatalf("check-templates: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "serve", "--dev", "--data", t.TempDir(),
		"--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	cmd.Env = childEnv("PHIGATE_ORG_NOTICE_TEMPLATES=" + tdir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil || err == nil {
		t.Fatalf("serve with a template using .Subject: %v (did not refuse to start)\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "new-message.txt:2:") || !strings.Contains(stderr.String(), "field Subject") {
		t.Fatalf("serve's refusal does not name the file, line and field:\n%s", stderr.String())
	}

	good := "{{.Org}} has a secure message for you: {{.Link}} (until {{.ExpiresAt}}).\n"
	if err := os.WriteFile(filepath.Join(tdir, "new-message.txt"), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "", "notices", "check-templates", "--dir", tdir); r.code != 0 {
		t.Fatalf("check-templates on a good folder: exit %d\n%s", r.code, r.stderr)
	}
}
