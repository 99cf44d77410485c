package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/e2e"
)

func expect(t *testing.T, what string, code int, msg string, want int, wantEnh string) {
	t.Helper()
	if code != want || !strings.HasPrefix(msg, wantEnh) {
		t.Errorf("%s: got %d %s, want %d %s", what, code, msg, want, wantEnh)
	}
}

// expectLogged checks that a refusal left a log line with its code.
func expectLogged(t *testing.T, h *e2e.Harness, code int, stage string) {
	t.Helper()
	needle := fmt.Sprintf("stage=%s code=%d", stage, code)
	if !bytes.Contains(h.Logs.Bytes(), []byte(needle)) {
		t.Errorf("no log line with %q", needle)
	}
}

// TestSMTPRefusals checks every refusal of issue #2 point 3: the reply code,
// the enhanced status code, and that it was logged.
func TestSMTPRefusals(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.SMTP.MaxMessageBytes = 64 << 10
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	h.AddStaff("nurse@clinic.example")

	t.Run("no AUTH offered or accepted before TLS", func(t *testing.T) {
		r := e2e.DialRaw(t, h.SMTP)
		code, msg := r.Cmd("EHLO client.example")
		if code != 250 || strings.Contains(msg, "AUTH") || !strings.Contains(msg, "STARTTLS") {
			t.Errorf("EHLO before TLS: %d %q", code, msg)
		}
		code, msg = r.AuthPlain(staff, pass)
		expect(t, "AUTH before TLS", code, msg, 523, "5.7.10")
		if !bytes.Contains(h.Logs.Bytes(), []byte("AUTH attempted before STARTTLS")) {
			t.Error("AUTH before TLS not logged")
		}
		code, msg = r.Cmd("MAIL FROM:<" + staff + ">")
		expect(t, "MAIL before TLS", code, msg, 530, "5.7.0")
		expectLogged(t, h, 530, "mail")
	})
	t.Run("MAIL before AUTH", func(t *testing.T) {
		r := e2e.DialRaw(t, h.SMTP)
		r.Cmd("EHLO client.example")
		r.StartTLS()
		code, msg := r.Cmd("EHLO client.example")
		if !strings.Contains(msg, "AUTH PLAIN LOGIN") || !strings.Contains(msg, fmt.Sprintf("SIZE %d", 64<<10)) {
			t.Errorf("EHLO after TLS: %d %q", code, msg)
		}
		code, msg = r.Cmd("MAIL FROM:<" + staff + ">")
		expect(t, "MAIL before AUTH", code, msg, 530, "5.7.0")
		// No open relay: nothing goes anywhere without AUTH, org domain or not.
		code, msg = r.Cmd("RCPT TO:<someone@clinic.example>")
		if code < 500 {
			t.Errorf("RCPT without MAIL accepted: %d %s", code, msg)
		}
		code, msg = r.Cmd("DATA")
		if code < 500 {
			t.Errorf("DATA without MAIL accepted: %d %s", code, msg)
		}
	})
	t.Run("sender not owned", func(t *testing.T) {
		r := e2e.DialRaw(t, h.SMTP)
		r.Cmd("EHLO client.example")
		r.StartTLS()
		r.Cmd("EHLO client.example")
		code, msg := r.AuthPlain(staff, pass)
		expect(t, "AUTH", code, msg, 235, "2.")
		for _, from := range []string{"nurse@clinic.example", "ceo@other.example", ""} {
			code, msg = r.Cmd("MAIL FROM:<" + from + ">")
			expect(t, "MAIL FROM "+from, code, msg, 553, "5.7.1")
		}
		expectLogged(t, h, 553, "mail")
		code, msg = r.Cmd("MAIL FROM:<DR.LEE@clinic.example>")
		expect(t, "own address, other case", code, msg, 250, "2.")
		r.Cmd("RCPT TO:<owned@example.net>")
		r.Cmd("DATA")
		code, msg = r.Write([]byte("Subject: ok\r\n\r\nhello\r\n.\r\n"))
		expect(t, "accepted", code, msg, 250, "2.0.0 OK: queued as ")
		ref := strings.TrimPrefix(msg, "2.0.0 OK: queued as ")
		if !bytes.Contains(h.Logs.Bytes(), []byte("ref="+ref)) {
			t.Errorf("reference %q of the 250 is not in the log", ref)
		}
	})
	t.Run("portal password and revoked app password fail", func(t *testing.T) {
		err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: "staff portal password 123", From: staff, To: []string{"a@example.net"}, Msg: []byte("Subject: x\r\n\r\nx\r\n")})
		if e2e.Code(err) != 535 {
			t.Errorf("portal password: %v", err)
		}
		err = e2e.Send(e2e.SendOptions{Addr: h.SMTP, Login: true, User: "nurse@clinic.example", Pass: pass, From: staff, To: []string{"a@example.net"}, Msg: []byte("Subject: x\r\n\r\nx\r\n")})
		if e2e.Code(err) != 535 {
			t.Errorf("someone else's app password: %v", err)
		}
		expectLogged(t, h, 535, "auth")
		nursePass, err := h.G.Identity.AddAppPassword(context.Background(), "nurse@clinic.example", "phone")
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("Subject: x\r\n\r\nx\r\n")
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: "nurse@clinic.example", Pass: nursePass, From: "nurse@clinic.example", To: []string{"a@example.net"}, Msg: msg}); err != nil {
			t.Fatalf("fresh app password: %v", err)
		}
		if err := h.G.Identity.RevokeAppPassword(context.Background(), "nurse@clinic.example", "phone"); err != nil {
			t.Fatal(err)
		}
		err = e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: "nurse@clinic.example", Pass: nursePass, From: "nurse@clinic.example", To: []string{"a@example.net"}, Msg: msg})
		if e2e.Code(err) != 535 {
			t.Errorf("revoked app password: %v", err)
		}
	})
	t.Run("too many recipients", func(t *testing.T) {
		r := e2e.DialRaw(t, h.SMTP)
		r.Cmd("EHLO client.example")
		r.StartTLS()
		r.Cmd("EHLO client.example")
		r.AuthPlain(staff, pass)
		r.Cmd("MAIL FROM:<" + staff + ">")
		for i := 0; i < 100; i++ {
			if code, msg := r.Cmd(fmt.Sprintf("RCPT TO:<p%d@example.net>", i)); code != 250 {
				t.Fatalf("rcpt %d: %d %s", i, code, msg)
			}
		}
		code, msg := r.Cmd("RCPT TO:<one-too-many@example.net>")
		expect(t, "101st recipient", code, msg, 452, "4.5.3")
		expectLogged(t, h, 452, "rcpt")
		code, msg = r.Cmd("RCPT TO:<not an address>")
		if code < 500 {
			t.Errorf("bad address accepted: %d %s", code, msg)
		}
	})
	t.Run("message too big", func(t *testing.T) {
		r := e2e.DialRaw(t, h.SMTP)
		r.Cmd("EHLO client.example")
		r.StartTLS()
		r.Cmd("EHLO client.example")
		r.AuthPlain(staff, pass)
		code, msg := r.Cmd(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", staff, 1<<20))
		expect(t, "declared SIZE", code, msg, 552, "5.3.4")
		r.Cmd("MAIL FROM:<" + staff + ">")
		r.Cmd("RCPT TO:<big@example.net>")
		if code, _ := r.Cmd("DATA"); code != 354 {
			t.Fatal(code)
		}
		line := strings.Repeat("x", 900) + "\r\n"
		body := "Subject: big\r\n\r\n" + strings.Repeat(line, 100) + ".\r\n"
		code, msg = r.Write([]byte(body))
		expect(t, "oversized DATA", code, msg, 552, "5.3.4")
		expectLogged(t, h, 552, "data")
	})
	t.Run("line too long", func(t *testing.T) {
		r := e2e.DialRaw(t, h.SMTP)
		r.Cmd("EHLO client.example")
		r.StartTLS()
		r.Cmd("EHLO client.example")
		r.AuthPlain(staff, pass)
		r.Cmd("MAIL FROM:<" + staff + ">")
		r.Cmd("RCPT TO:<long@example.net>")
		r.Cmd("DATA")
		code, msg := r.Write([]byte("Subject: long\r\n\r\n" + strings.Repeat("y", 1500) + "\r\n.\r\n"))
		expect(t, "over-long line", code, msg, 500, "5.6.0")
		expectLogged(t, h, 500, "data")
	})
	// Only the two accepted messages made notices.
	h.WaitNotices(2)
	if n := len(h.Notices()); n != 2 {
		t.Errorf("refused transactions produced notices: %d", n)
	}
}

// TestMetrics: the Prometheus listener counts what happened, with no PHI in
// any label or value.
func TestMetrics(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	canary := "CANARYMETRICS" + staff
	// The display name holds an @, so it is quoted (RFC 5322 3.4): the
	// header From is parsed and checked (issue 8.6).
	msg := e2e.Multipart(staff, `"`+canary+`"`, "metrics.patient@example.net", canary, canary, "<p>x</p>", canary+".pdf", []byte(canary))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"metrics.patient@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	_ = e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: "wrong", From: staff, To: []string{"x@example.net"}, Msg: msg})
	h.WaitNotices(1)
	h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "metrics.patient@example.net", "password": "wrong wrong wrong"}, 401, nil)
	addr := h.G.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics listener")
	}
	var body []byte
	waitFor(t, "notice metric", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return bytes.Contains(body, []byte(`phigate_notices_sent_total{kind="new-message"} 1`))
	})
	for _, want := range []string{`phigate_smtp_accepted_total{action="portal"} 1`, `phigate_smtp_refused_total{reason="auth"} 1`,
		`phigate_signin_failures_total{factor="password"} 1`, `phigate_smtp_duration_seconds_count{stage="data"} 1`,
		`phigate_http_request_duration_seconds_count{code="4xx",route="POST /api/v1/login"} 1`, "phigate_sessions_active"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{"CANARYMETRICS", "metrics.patient", "example.net"} {
		if bytes.Contains(body, []byte(leak)) {
			t.Errorf("metrics contain %q", leak)
		}
	}
}
