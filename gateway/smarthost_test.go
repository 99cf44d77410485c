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
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/notify"
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
	// here a maildrop stands in for a fixed smarthost). The gateway is
	// reopened without starting it, so the dispatcher the test drives (with
	// its clock moved and its sender swapped) is the only one running: the
	// gateway's own loop would race with those changes.
	d, closeGW := reopenDispatcher(t, dir, ln.Addr().String())
	defer closeGW()
	clock := testclock.New(time.Now().Add(49 * time.Hour))
	d.Now = clock.Now
	if _, err := d.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The same run may already have tried the report on the plain
	// smarthost: move past its back-off.
	clock.Add(time.Hour)
	maildrop := &outbound.Maildrop{Dir: filepath.Join(dir, "maildrop")}
	d.Sender = maildrop
	if _, err := d.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	notices, _ := filepath.Glob(filepath.Join(maildrop.Dir, "*.eml"))
	var report []byte
	for _, f := range notices {
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

// reopenDispatcher opens the gateway's data in dir again (keys, database,
// audit trail) without starting any of its services, and returns a
// dispatcher built as Gateway.Start builds it, sending to smarthost.
func reopenDispatcher(t *testing.T, dir, smarthost string) (*notify.Dispatcher, func()) {
	t.Helper()
	cfg := e2e.Config(dir)
	cfg.Smarthost.Addr = smarthost
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log, closer, err := gateway.OpenLogger(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.Open(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	snd, err := outbound.NewSmarthost(cfg.Smarthost, cfg.Server.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	d := &notify.Dispatcher{Store: g.Store, Keys: g.Keys, Sender: snd, Org: cfg.Org,
		Hostname: cfg.Server.Hostname, Log: log, MaxRelayAge: cfg.Smarthost.MaxRetry.Duration}
	return d, func() {
		g.Close()
		closer.Close()
	}
}
