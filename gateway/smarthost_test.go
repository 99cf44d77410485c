package gateway_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/outbound"
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

// TestSmarthostWithoutSTARTTLS: onward mail to a smarthost that refuses
// STARTTLS is accepted into the durable queue (250), never sent in the
// clear, retried with back-off, and when the retry time runs out its sender
// gets a delivery-failure report saying why. Notices wait the same way.
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

	dir := t.TempDir()
	cfg := e2e.Config(dir)
	cfg.Smarthost.Addr = ln.Addr().String()
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	msg := e2e.Multipart(staff, "Dr Lee", "nurse@clinic.example", "Internal", "handover notes", "<p>x</p>", "a.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"nurse@clinic.example"}, Msg: msg}); err != nil {
		t.Fatalf("relay should be queued: %v", err)
	}
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
	if n, _, err := h.G.Store.OutboxStats(t.Context(), time.Now()); err != nil || n != 2 {
		t.Fatalf("relay and notice should wait in the queue: %d %v", n, err)
	}
	// The queue's content is sealed: the message is not in the database in
	// the clear.
	h.Stop()
	for _, f := range []string{"phigate.db", "phigate.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if bytes.Contains(b, []byte("handover notes")) {
			t.Fatalf("queued message in the clear in %s", f)
		}
	}
	// Restart: nothing lost. Past the retry time the relay gives up and its
	// sender is told why (the report goes out once the smarthost speaks TLS;
	// here a maildrop stands in for a fixed smarthost).
	cfg2 := e2e.Config(dir)
	cfg2.Smarthost.Addr = ln.Addr().String()
	h2 := e2e.Start(t, cfg2)
	later := time.Now().Add(49 * time.Hour)
	h2.G.Dispatcher.Now = func() time.Time { return later }
	if _, err := h2.G.Dispatcher.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	h2.G.Dispatcher.Sender = &outbound.Maildrop{Dir: filepath.Join(dir, "maildrop")}
	if _, err := h2.G.Dispatcher.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	var report []byte
	for _, f := range h2.Notices() {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("Undeliverable")) {
			report = b
		}
	}
	if report == nil {
		t.Fatal("no delivery-failure report")
	}
	for _, want := range []string{"To: <" + staff + ">", "does not offer STARTTLS", "1 recipient"} {
		if !bytes.Contains(report, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, leak := range []string{"nurse@clinic.example", "Internal", "handover"} {
		if bytes.Contains(report, []byte(leak)) {
			t.Errorf("report shows %q", leak)
		}
	}
}
