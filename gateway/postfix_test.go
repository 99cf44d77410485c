package gateway_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/postfixtest"
	"github.com/phigate/phigate/internal/testtool"
)

// TestInteropPostfixRelayhost submits through Postfix, the organisation's
// own MTA, configured as a relayhost client of phigate with SASL (issue:
// "a Postfix relayhost with SASL"): a local program hands the message to
// Postfix's sendmail, Postfix relays it to phigate's STARTTLS submission
// port with AUTH PLAIN and an app password, and the portal recipient reads
// it. A Postfix with a wrong password must get 535 and keep the message
// deferred in its own queue, with nothing delivered to the portal.
//
// Each Postfix instance is private to the test: its own config, queue and
// data directories under t.TempDir(), no smtpd listener at all, loopback
// only, and its log in a file (maillog_file) instead of syslog.
func TestInteropPostfixRelayhost(t *testing.T) {
	testtool.Need(t, "postfix")
	testtool.Need(t, "sendmail")
	testtool.Need(t, "postqueue")

	t.Run("app password", func(t *testing.T) {
		t.Parallel()
		h := e2e.Start(t, e2e.Config(t.TempDir()))
		pass := h.AddStaff(staff)
		pf := startPostfix(t, h.SMTP, staff, pass)

		const rcpt = "postfix-patient@example.net"
		const subject = "Your lab results via the clinic relay"
		text := "Dear patient,\r\nyour results are attached.\r\nRésumé: all values normal.\r\n"
		att := randBytes(3000)
		msg := e2e.Multipart(staff, "Dr Lee", rcpt, subject, text, "<p>See <b>attached</b></p>", "labs.bin", att)
		pf.sendmail(staff, msg)

		notices := pf.waitNotices(h, 1, 60*time.Second)
		token := e2e.ClaimToken(t, notices[0])
		c := h.Client()
		c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": "walnut glacier mirror 46"}, 200, nil)
		var list listJSON
		c.JSON("GET", "/api/v1/messages", nil, 200, &list)
		if len(list.Messages) != 1 || list.Messages[0].Subject != subject || list.Messages[0].Attachments != 1 ||
			list.Messages[0].From != "Dr Lee <"+staff+">" {
			t.Fatalf("inbox: %+v", list)
		}
		var m msgJSON
		c.JSON("GET", "/api/v1/messages/"+list.Messages[0].ID, nil, 200, &m)
		if m.Text != text {
			t.Errorf("text %q, want %q", m.Text, text)
		}
		if m.Headers.Subject != subject {
			t.Errorf("subject header %q", m.Headers.Subject)
		}
		if m.Signature != "verified" {
			t.Errorf("signature %q", m.Signature)
		}
		if len(m.Attachments) != 1 || m.Attachments[0].Filename != "labs.bin" {
			t.Fatalf("attachments %+v", m.Attachments)
		}
		st, _, body := c.Do("GET", "/api/v1/messages/"+m.ID+"/attachments/"+m.Attachments[0].ID, nil, nil)
		if st != 200 || !bytes.Equal(body, att) {
			t.Errorf("attachment: status %d, %d bytes, equal=%v", st, len(body), bytes.Equal(body, att))
		}

		// phigate's side: one session, authenticated with PLAIN after
		// STARTTLS, one message accepted, nothing refused.
		logs := h.Logs.Bytes()
		if !regexp.MustCompile(`msg="smtp auth ok".*mech=PLAIN`).Match(logs) {
			t.Errorf("no AUTH PLAIN success in phigate's log:\n%s", logs)
		}
		if n := bytes.Count(logs, []byte(`msg="smtp accepted"`)); n != 1 {
			t.Errorf("%d messages accepted, want 1", n)
		}
		for _, bad := range []string{`msg="smtp refused"`, `msg="smtp auth failed"`, "AUTH attempted before STARTTLS"} {
			if bytes.Contains(logs, []byte(bad)) {
				t.Errorf("phigate logged %q:\n%s", bad, logs)
			}
		}
		// Postfix's side: TLS to phigate, delivered, queue empty.
		mlog := pf.ReadLog()
		for _, re := range []string{
			`TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: TLSv1\.[23]`,
			`to=<` + regexp.QuoteMeta(rcpt) + `>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent \(250 `,
		} {
			if !regexp.MustCompile(re).MatchString(mlog) {
				t.Errorf("Postfix log lacks %s", re)
			}
		}
		if q := pf.Queue(); !strings.Contains(q, "Mail queue is empty") {
			t.Errorf("Postfix queue not empty:\n%s", q)
		}
		if testing.Verbose() && !t.Failed() { // on failure, startPostfix's cleanup shows it
			t.Logf("Postfix log:\n%s", mlog)
		}
	})

	t.Run("wrong password is deferred with 535", func(t *testing.T) {
		t.Parallel()
		h := e2e.Start(t, e2e.Config(t.TempDir()))
		pass := h.AddStaff(staff)
		// Right shape, wrong secret: the portal password is not an app password.
		pf := startPostfix(t, h.SMTP, staff, "staff portal password 123")
		if pass == "staff portal password 123" {
			t.Fatal("test set-up: app password equals portal password")
		}
		msg := e2e.Multipart(staff, "Dr Lee", "postfix-wrong@example.net", "Must not arrive", "secret body", "<p>secret</p>", "x.bin", []byte("x"))
		pf.sendmail(staff, msg)

		// Postfix tries once, is refused, and defers (smtp_sasl_auth_soft_bounce).
		deferred := regexp.MustCompile(`status=deferred \(SASL authentication failed; server 127\.0\.0\.1\[127\.0\.0\.1\] said: 535 5\.7\.8 `)
		pf.waitLog(deferred, 30*time.Second)
		q := pf.Queue()
		if !strings.Contains(q, "postfix-wrong@example.net") || !strings.Contains(q, "535 5.7.8") {
			t.Errorf("message not deferred in Postfix's queue with 535:\n%s", q)
		}
		// Nothing reached the portal, even after a grace period.
		time.Sleep(2 * time.Second)
		if n := h.Notices(); len(n) != 0 {
			t.Errorf("notices after failed AUTH: %v", n)
		}
		logs := h.Logs.Bytes()
		if !bytes.Contains(logs, []byte(`msg="smtp auth failed"`)) || !bytes.Contains(logs, []byte("stage=auth code=535")) {
			t.Errorf("failed AUTH not logged by phigate:\n%s", logs)
		}
		if bytes.Contains(logs, []byte(`msg="smtp accepted"`)) || bytes.Contains(logs, []byte(`msg="smtp auth ok"`)) {
			t.Errorf("phigate accepted something:\n%s", logs)
		}
		if testing.Verbose() && !t.Failed() {
			t.Logf("Postfix log:\n%s\nPostfix queue:\n%s", pf.ReadLog(), q)
		}
	})
}

// postfixInstance is a private Postfix (internal/postfixtest) that
// submits to phigate.
type postfixInstance struct {
	*postfixtest.Instance
	t *testing.T
}

// startPostfix runs a Postfix whose only way out is relayhost = relay
// (phigate's STARTTLS port) with SASL user/pass, and stops it when the test
// ends. It has no smtpd listener: nothing listens on port 25 or anywhere.
func startPostfix(t *testing.T, relay, user, pass string) *postfixInstance {
	t.Helper()
	host, port, err := pfSplitLoopback(relay)
	if err != nil {
		t.Fatal(err)
	}
	p := &postfixInstance{Instance: postfixtest.New(t), t: t}
	nexthop := fmt.Sprintf("[%s]:%s", host, port)
	// texthash: needs no postmap; the smtp client reads it as root at start-up.
	p.WriteFile("etc/sasl_passwd", nexthop+" "+user+":"+pass+"\n", 0o600)
	p.Start(postfixtest.Options{MainCF: fmt.Sprintf(postfixMainCF, nexthop, filepath.Join(p.Dir, "sasl_passwd"))})
	return p
}

// pfSplitLoopback insists the relay is on 127.0.0.1: the test talks to
// nothing else.
func pfSplitLoopback(addr string) (host, port string, err error) {
	host, port, ok := strings.Cut(addr, ":")
	if !ok || host != "127.0.0.1" {
		return "", "", fmt.Errorf("relay %q is not on 127.0.0.1", addr)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return "", "", err
	}
	return host, port, nil
}

// sendmail hands msg to Postfix the way a local program would.
func (p *postfixInstance) sendmail(from string, msg []byte) {
	p.t.Helper()
	if out, err := p.Cmd(msg, "sendmail", "-C", p.Dir, "-f", from, "-t", "-i"); err != nil {
		p.t.Fatalf("sendmail: %v\n%s\nPostfix log:\n%s", err, out, p.ReadLog())
	}
}

// waitLog waits until Postfix's log matches re.
func (p *postfixInstance) waitLog(re *regexp.Regexp, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for !re.MatchString(p.ReadLog()) {
		if time.Now().After(deadline) {
			p.t.Fatalf("Postfix log never matched %s within %v", re, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitNotices waits for n notices in phigate's maildrop, flushing Postfix's
// queue now and then in case a first attempt was deferred.
func (p *postfixInstance) waitNotices(h *e2e.Harness, n int, d time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(d)
	nextFlush := time.Now().Add(5 * time.Second)
	for {
		if f := h.Notices(); len(f) >= n {
			return f
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no portal notice within %v (have %d, want %d)\nphigate log:\n%s", d, len(h.Notices()), n, h.Logs.Bytes())
		}
		if time.Now().After(nextFlush) {
			p.Cmd(nil, "postqueue", "-c", p.Dir, "-f")
			nextFlush = time.Now().Add(5 * time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postfixMainCF: a null client that relays everything to phigate.
// Arguments: relayhost, SASL password map file.
const postfixMainCF = `myhostname = relay.clinic.example
mynetworks = 127.0.0.0/8
relayhost = %s
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = texthash:%s
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtp_sasl_mechanism_filter = plain
smtp_tls_security_level = encrypt
smtp_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_protocols = >=TLSv1.2
smtp_tls_loglevel = 1
`
