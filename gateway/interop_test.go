package gateway_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
)

// TestInteropClients submits through real third-party clients: swaks (the
// admin's test tool) and Python's smtplib (scripts, many devices), with
// STARTTLS and implicit TLS, AUTH PLAIN and LOGIN, and checks every message
// reaches the recipient's inbox intact.
func TestInteropClients(t *testing.T) {
	swaks := testtool.Need(t, "swaks")
	python := testtool.Need(t, "python3")
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	host, port, _ := strings.Cut(h.SMTP, ":")
	_, sport, _ := strings.Cut(h.SMTPS, ":")

	runs := []struct {
		name string
		cmd  *exec.Cmd
	}{
		{"swaks STARTTLS PLAIN", exec.Command(swaks, "--server", host, "--port", port, "--tls", "--auth", "PLAIN",
			"--auth-user", staff, "--auth-password", pass, "--from", staff, "--to", "interop@example.net",
			"--header", "Subject: via swaks plain", "--body", "swaks body one", "--attach-type", "text/csv",
			"--attach-name", "labs.csv", "--attach", "@/dev/null")},
		{"swaks implicit TLS LOGIN", exec.Command(swaks, "--server", host, "--port", sport, "--tlsc", "--auth", "LOGIN",
			"--auth-user", staff, "--auth-password", pass, "--from", staff, "--to", "interop@example.net",
			"--header", "Subject: via swaks login", "--body", "swaks body two")},
		{"python smtplib STARTTLS", exec.Command(python, "-c", pySend, host, port, staff, pass, "starttls")},
		{"python smtplib SMTP_SSL", exec.Command(python, "-c", pySend, host, sport, staff, pass, "ssl")},
	}
	for _, r := range runs {
		out, err := r.cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.name, err, out)
		}
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	c := h.Client()
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": "lemon quartz harbor 23"}, 200, nil)
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	subjects := map[string]string{}
	for _, m := range list.Messages {
		subjects[m.Subject] = m.ID
	}
	for subj, body := range map[string]string{
		"via swaks plain": "swaks body one", "via swaks login": "swaks body two",
		"via python starttls": "python body", "via python ssl": "python body",
	} {
		id, ok := subjects[subj]
		if !ok {
			t.Errorf("no message %q in %v", subj, subjects)
			continue
		}
		var m msgJSON
		c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
		if !strings.Contains(m.Text, body) || m.Signature != "verified" {
			t.Errorf("%s: text %q signature %s", subj, m.Text, m.Signature)
		}
	}
}

const pySend = `
import smtplib, ssl, sys
from email.message import EmailMessage
host, port, user, pw, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
m = EmailMessage()
m['From'] = 'Dr Lee <%s>' % user
m['To'] = 'interop@example.net'
m['Subject'] = 'via python ' + mode
m.set_content('python body')
m.add_attachment(b'\x00\x01binary', maintype='application', subtype='octet-stream', filename='r\u00e9sultat.bin')
ctx = ssl._create_unverified_context()
if mode == 'ssl':
    s = smtplib.SMTP_SSL(host, port, context=ctx)
else:
    s = smtplib.SMTP(host, port)
    s.starttls(context=ctx)
s.login(user, pw)
s.send_message(m)
s.quit()
`
