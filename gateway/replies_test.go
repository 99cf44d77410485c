package gateway_test

import (
	"io"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/e2e"
)

// TestSMTPRepliesInPlainWords (issue 13.10): every reply a mail client may
// show a person is plain words with the RFC 3463 code that fits, not
// go-smtp's stock jokes ("Roger, accepting mail from", "I'll make sure ...
// gets this", "I have successfully done nothing"); third_party/go-smtp
// carries the patched texts (PATCHES.md), and this test fails if a module
// update drops them.
func TestSMTPRepliesInPlainWords(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	c := dialFrom(t, "127.0.0.1", h.SMTP)
	c.tlsReady()
	if r := c.cmd("MAIL FROM:<" + staff + ">"); !strings.HasPrefix(r, "530 5.7.0") {
		t.Errorf("MAIL before AUTH: %s", r)
	}
	if r := c.authPlain(staff, pass); !strings.HasPrefix(r, "235 2.0.0") {
		t.Fatalf("AUTH: %s", r)
	}
	steps := []struct{ cmd, want string }{
		{"NOOP", "250 2.0.0 OK"},
		{"RCPT TO:<patient@example.net>", "502 5.5.1 Send MAIL FROM first"},
		{"MAIL FROM:<" + staff + ">", "250 2.1.0 Sender <" + staff + "> OK"},
		{"DATA", "502 5.5.1 Send RCPT TO first"},
		{"RCPT TO:<patient@example.net>", "250 2.1.5 Recipient <patient@example.net> OK"},
		{"RSET", "250 2.0.0 OK, transaction reset"},
		{"MAIL FROM:<" + staff + ">", "250 2.1.0 Sender <" + staff + "> OK"},
		{"RCPT TO:<patient@example.net>", "250 2.1.5 Recipient <patient@example.net> OK"},
		{"DATA", "354 Start mail input; end with <CRLF>.<CRLF>"},
	}
	for _, s := range steps {
		if r := c.cmd(s.cmd); r != s.want {
			t.Errorf("%s: %q, want %q", s.cmd, r, s.want)
		}
	}
	io.WriteString(c.conn, "From: "+staff+"\r\nTo: patient@example.net\r\nSubject: lab results\r\n\r\nYour results are ready.\r\n.\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "250 2.0.0") {
		t.Errorf("end of DATA: %s", r)
	}
	if r := c.cmd("QUIT"); r != "221 2.0.0 Closing connection" {
		t.Errorf("QUIT: %q", r)
	}
}
