package gateway_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/internal/e2e"
)

// plainPeer is a real SMTP server that offers no STARTTLS; it records
// whether anyone tried to send it mail.
type plainPeer struct {
	mu    sync.Mutex
	mails int
	data  int
}

func (p *plainPeer) NewSession(*smtp.Conn) (smtp.Session, error) { return &plainSession{p}, nil }

type plainSession struct{ p *plainPeer }

func (s *plainSession) Mail(string, *smtp.MailOptions) error {
	s.p.mu.Lock()
	s.p.mails++
	s.p.mu.Unlock()
	return nil
}
func (s *plainSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *plainSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	s.p.mu.Lock()
	s.p.data++
	s.p.mu.Unlock()
	return nil
}
func (s *plainSession) Reset()        {}
func (s *plainSession) Logout() error { return nil }

// TestSmarthostWithoutSTARTTLS: a relay recipient's message is never sent
// to a smarthost that refuses STARTTLS; the sender's client is told why with
// a temporary failure (it keeps the message and retries), and notices wait
// in the outbox rather than go out in the clear.
func TestSmarthostWithoutSTARTTLS(t *testing.T) {
	peer := &plainPeer{}
	srv := smtp.NewServer(peer)
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cfg := e2e.Config(t.TempDir())
	cfg.Smarthost.Addr = ln.Addr().String()
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	msg := e2e.Multipart(staff, "Dr Lee", "nurse@clinic.example", "Internal", "handover notes", "<p>x</p>", "a.txt", []byte("x"))
	err = e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"nurse@clinic.example"}, Msg: msg})
	se, ok := err.(*smtp.SMTPError)
	if !ok || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 10}) || !strings.Contains(se.Message, "does not offer TLS") {
		t.Fatalf("relay to a smarthost without STARTTLS: %v", err)
	}
	// A portal message is accepted; its notice waits.
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"p@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.G.Dispatcher.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	peer.mu.Lock()
	mails, data := peer.mails, peer.data
	peer.mu.Unlock()
	if mails != 0 || data != 0 {
		t.Fatalf("the smarthost got %d MAIL and %d DATA in the clear", mails, data)
	}
	n, _, err := h.G.Store.OutboxStats(t.Context(), time.Now())
	if err != nil || n != 1 {
		t.Errorf("the notice should wait in the outbox: %d %v", n, err)
	}
}
