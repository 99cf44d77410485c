package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
)

// rawFrom is a line-level SMTP client dialling from a chosen loopback
// address, so a test can be several clients (e2e.Raw dials from 127.0.0.1).
type rawFrom struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialFrom(t *testing.T, from, addr string) *rawFrom {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute)) // a safety net only
	t.Cleanup(func() { c.Close() })
	return &rawFrom{t: t, conn: c, r: bufio.NewReader(c)}
}

func (c *rawFrom) reply() string {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading a reply: %v (got %q)", err, line)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (c *rawFrom) cmd(line string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

// tlsReady reads the greeting, says EHLO, upgrades with STARTTLS and says
// EHLO again: ready for AUTH.
func (c *rawFrom) tlsReady() {
	c.t.Helper()
	c.reply()
	c.cmd("EHLO client.example")
	if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "220") {
		c.t.Fatalf("STARTTLS: %s", r)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.cmd("EHLO client.example")
}

func (c *rawFrom) authPlain(user, pass string) string {
	return c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
}

// closed says whether the server closed the connection (in order).
func (c *rawFrom) closed() bool {
	_, err := c.r.ReadByte()
	return err == io.EOF
}

func search(t *testing.T, h *e2e.Harness, q audit.Query) []audit.Entry {
	t.Helper()
	es, err := h.G.Trail.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestSMTPAuthThrottled (issue 8.4, 8.3): failed AUTH is delayed, a
// connection is dropped at its third failure, an address is shut out at
// its allowance without its password being checked, and the security
// officer is alerted; another address still signs in; and the failures
// leave one audit row per window, not one each.
func TestSMTPAuthThrottled(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.SMTP.AuthFailureDelay.Duration = 10 * time.Millisecond
	cfg.SMTP.AuthMaxFailures = 3
	cfg.Security.IPMaxFailures = 5
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)

	c := dialFrom(t, "127.0.0.2", h.SMTP)
	c.tlsReady()
	for i := 1; i <= 2; i++ {
		if r := c.authPlain(staff, "wrong"); !strings.HasPrefix(r, "535 5.7.8") {
			t.Errorf("failure %d: %s", i, r)
		}
	}
	if r := c.authPlain(staff, "wrong"); !strings.HasPrefix(r, "421 4.7.0") || !c.closed() {
		t.Errorf("third failure on one connection: %s; want 421 4.7.0 and a close", r)
	}

	c = dialFrom(t, "127.0.0.2", h.SMTP)
	c.tlsReady()
	c.authPlain(staff, "wrong")
	if r := c.authPlain(staff, "wrong"); !strings.HasPrefix(r, "421 4.7.0") || !c.closed() {
		t.Errorf("fifth failure from one address: %s; want 421 4.7.0 and a close", r)
	}
	// The address is shut out for the window: the right password is not
	// even checked.
	c = dialFrom(t, "127.0.0.2", h.SMTP)
	c.tlsReady()
	if r := c.authPlain(staff, pass); !strings.HasPrefix(r, "421 4.7.0") || !c.closed() {
		t.Errorf("right password from a throttled address: %s", r)
	}
	// A flood from the throttled address: each attempt is refused at once
	// and adds nothing to the trail but a count.
	for i := 0; i < 50; i++ {
		c := dialFrom(t, "127.0.0.2", h.SMTP)
		c.tlsReady()
		if r := c.authPlain(staff, "wrong"); !strings.HasPrefix(r, "421 4.7.0") {
			t.Fatalf("attempt %d from a throttled address: %s", i, r)
		}
		c.conn.Close() // as a client does after 421; its slot is then free
	}
	// One row per kind per window: connect, auth failed, refuse (auth),
	// and the lock-out.
	if n := len(search(t, h, audit.Query{IP: "127.0.0.2", Limit: 1000})); n > 4 {
		t.Errorf("%d audit rows for 55 AUTH attempts over 53 connections from one address, want at most 4", n)
	}
	other := dialFrom(t, "127.0.0.3", h.SMTP)
	other.tlsReady()
	if r := other.authPlain(staff, pass); !strings.HasPrefix(r, "235") {
		t.Errorf("another address: %s", r)
	}

	// Five failures, one row: the rest are counted into a summary row at
	// the end of the window.
	if n := len(search(t, h, audit.Query{Action: "smtp.auth", Outcome: "failed", IP: "127.0.0.2"})); n != 1 {
		t.Errorf("%d smtp.auth failed rows for 5 failures, want 1", n)
	}
	locks := search(t, h, audit.Query{Action: "auth.lockout", IP: "127.0.0.2"})
	if len(locks) != 1 || locks[0].ObjectID != "smtp-auth" {
		t.Errorf("auth.lockout rows: %+v", locks)
	}
	found := false
	for _, a := range h.G.Alerts.Recent(0) {
		found = found || a.Kind == "lockout" && strings.Contains(a.Text, "127.0.0.2")
	}
	if !found {
		t.Errorf("no lockout alert for 127.0.0.2: %+v", h.G.Alerts.Recent(0))
	}
}

// TestSMTPRecipientForms (issue 8.6): %-hacks, bang paths, quoted local
// parts and address literals are refused at RCPT, for the organisation's
// domain (relay) and outside it (portal) alike.
func TestSMTPRecipientForms(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	c := dialFrom(t, "127.0.0.1", h.SMTP)
	c.tlsReady()
	if r := c.authPlain(staff, pass); !strings.HasPrefix(r, "235") {
		t.Fatalf("AUTH: %s", r)
	}
	if r := c.cmd("MAIL FROM:<" + staff + ">"); !strings.HasPrefix(r, "250") {
		t.Fatalf("MAIL: %s", r)
	}
	for _, rcpt := range []string{
		"patient%example.net@clinic.example", "nurse%clinic.example@example.net",
		"example.net!patient@clinic.example", `"patient@example.net"@clinic.example`,
		`"a b"@example.net`, "patient@[192.0.2.1]", "nurse@[IPv6:2001:db8::1]",
	} {
		r := c.cmd("RCPT TO:<" + rcpt + ">")
		if !strings.HasPrefix(r, "553 5.1.3") && !strings.HasPrefix(r, "501 5.") {
			t.Errorf("RCPT %s: %s", rcpt, r)
		}
	}
	if r := c.cmd("RCPT TO:<patient@example.net>"); !strings.HasPrefix(r, "250") {
		t.Errorf("a plain address after the refusals: %s", r)
	}
}

// TestSMTPBareNewline (issue 8.6): DATA with a bare LF or a bare CR is
// refused (RFC 5321 2.3.8) and nothing is stored.
func TestSMTPBareNewline(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	c := dialFrom(t, "127.0.0.1", h.SMTP)
	c.tlsReady()
	if r := c.authPlain(staff, pass); !strings.HasPrefix(r, "235") {
		t.Fatalf("AUTH: %s", r)
	}
	// Client libraries turn a bare LF into CRLF: written raw here.
	for name, body := range map[string]string{
		"bare LF": "From: " + staff + "\r\nTo: patient@example.net\r\nSubject: x\r\n\r\nline\n.\nMAIL FROM:<x@y>\r\n.\r\n",
		"bare CR": "From: " + staff + "\r\nTo: patient@example.net\r\nSubject: x\r\n\r\nline\r.\rmore\r\n.\r\n",
	} {
		c.cmd("MAIL FROM:<" + staff + ">")
		c.cmd("RCPT TO:<patient@example.net>")
		if r := c.cmd("DATA"); !strings.HasPrefix(r, "354") {
			t.Fatalf("DATA: %s", r)
		}
		io.WriteString(c.conn, body)
		if r := c.reply(); !strings.HasPrefix(r, "550 5.6.0") || !strings.Contains(r, "bare CR or LF") {
			t.Errorf("%s: %s", name, r)
		}
	}
	if n := len(search(t, h, audit.Query{Action: "message.accept"})); n != 0 {
		t.Errorf("%d messages accepted", n)
	}
}

// TestSMTPFloodLegitClient (issue 8.4): hundreds of idle connections, far
// beyond the per-address cap from one address and beyond the total cap
// from several, neither stop a legitimate client's submission nor the
// portal, and the gateway holds no more than its caps.
func TestSMTPFloodLegitClient(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.SMTP.MaxConnectionsPerIP, cfg.SMTP.MaxConnections = 10, 30
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	var flood []*rawFrom
	refused := 0
	for i := 0; i < 400; i++ {
		// 200 from one address (over its cap), 200 from four others (over
		// the total cap, so newcomers take the oldest idle slots).
		from := "127.0.0.9"
		if i%2 == 1 {
			from = fmt.Sprintf("127.0.0.%d", 10+i%8/2)
		}
		c := dialFrom(t, from, h.SMTP)
		if r := c.reply(); strings.HasPrefix(r, "421 4.7.0") {
			refused++
			c.conn.Close()
			continue
		}
		flood = append(flood, c)
	}
	// (Evictions free that address's slots too, so how many are refused
	// depends on the order; that some are shows its cap at work.)
	if refused == 0 {
		t.Errorf("no connection over one address's cap refused")
	}
	msg := e2e.Multipart(staff, "Dr Lee", "patient@example.net", "flood", "body", "", "", nil)
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff,
		To: []string{"patient@example.net"}, Msg: msg}); err != nil {
		t.Errorf("legitimate submission during the flood: %v", err)
	}
	if st, _, _ := h.Client().Do("GET", "/", nil, nil); st != 200 && st != 303 {
		t.Errorf("portal during the flood: %d", st)
	}
	open := 0
	for _, c := range flood {
		c.conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.r.ReadByte(); err != io.EOF {
			open++
		}
	}
	if open > 30 {
		t.Errorf("%d flood connections still open, the total cap is 30", open)
	}
}
