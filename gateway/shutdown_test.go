package gateway_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/store"
)

// inTransaction opens a session, authenticates, sends MAIL and RCPT, and
// starts DATA with the first half of a message whose Message-ID is id.
func inTransaction(t *testing.T, h *e2e.Harness, pass, id string) (*e2e.Raw, string) {
	t.Helper()
	r := beforeData(t, h, pass)
	return r, startData(t, r, id)
}

// beforeData opens a session and sends MAIL and RCPT.
func beforeData(t *testing.T, h *e2e.Harness, pass string) *e2e.Raw {
	t.Helper()
	r := e2e.DialRaw(t, h.SMTP)
	r.Cmd("EHLO client.example")
	r.StartTLS()
	r.Cmd("EHLO client.example")
	if code, msg := r.AuthPlain(staff, pass); code != 235 {
		t.Fatalf("AUTH: %d %s", code, msg)
	}
	if code, msg := r.Cmd("MAIL FROM:<" + staff + ">"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, msg)
	}
	if code, msg := r.Cmd("RCPT TO:<pat@example.net>"); code != 250 {
		t.Fatalf("RCPT: %d %s", code, msg)
	}
	return r
}

// startData sends DATA and the first half of the message; it returns the
// rest.
func startData(t *testing.T, r *e2e.Raw, id string) string {
	t.Helper()
	if code, msg := r.Cmd("DATA"); code != 354 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	head := fmt.Sprintf("From: <%s>\r\nTo: <pat@example.net>\r\nMessage-ID: <%s>\r\nSubject: results\r\n\r\n", staff, id)
	if _, err := r.Conn().Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	return "the rest of the body\r\n.\r\n"
}

// TestGracefulShutdown: a stop lets transactions in DATA finish with 250
// (each stored once), and one that had sent MAIL and RCPT but not yet
// DATA; it tells a session between transactions 421 4.3.2, refuses new
// connections, and cuts a client that never ends DATA when the grace
// period is over (issue 9.1).
func TestGracefulShutdown(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Server.ShutdownGrace.Duration = 2 * time.Second
	cfg.SMTP.Senders.ConcurrentTxns = 0 // no per-account cap: one account holds every session here
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)

	// One session between transactions: it has sent a message already.
	idle, rest := inTransaction(t, h, pass, "idle-1@client.example")
	if code, msg := idle.Write([]byte(rest)); code != 250 {
		t.Fatalf("first message: %d %s", code, msg)
	}
	const n = 4
	var mid [n]*e2e.Raw
	var rests [n]string
	for i := range mid {
		mid[i], rests[i] = inTransaction(t, h, pass, fmt.Sprintf("mid-%d@client.example", i))
	}
	stalled, _ := inTransaction(t, h, pass, "stalled@client.example")
	late := beforeData(t, h, pass)
	waitFor(t, "every DATA under way", func() bool { return gateway.SMTPInData(h.G) == n+1 })

	closed := make(chan error, 1)
	go func() { closed <- h.G.Close() }()

	// The idle session is told first; that also shows the stop has begun.
	if code, msg := idle.Read(); code != 421 || !strings.HasPrefix(msg, "4.3.2") {
		t.Errorf("session between transactions: %d %s, want 421 4.3.2", code, msg)
	}
	if c, err := net.DialTimeout("tcp", h.SMTP, time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted while stopping")
	}
	// A transaction begun before the stop may still send DATA.
	if code, msg := late.Write([]byte(startData(t, late, "late@client.example"))); code != 250 {
		t.Errorf("transaction begun before the stop: %d %s, want 250", code, msg)
	}
	for i, r := range mid {
		if code, msg := r.Write([]byte(rests[i])); code != 250 {
			t.Errorf("transaction %d in DATA: %d %s, want 250", i, code, msg)
		}
		// Then the session is closed with 421 instead of waiting for QUIT.
		if code, msg := r.Read(); code != 421 {
			t.Errorf("after transaction %d: %d %s, want 421", i, code, msg)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	// The stalled client was cut at the grace period, without a 250.
	if code, msg := stalled.ReadErr(); code == 250 {
		t.Errorf("stalled DATA answered %d %s", code, msg)
	}

	st, err := store.OpenSQLite(context.Background(), filepath.Join(cfg.Server.DataDir, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var stored int
	if err := st.DB().QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != n+2 {
		t.Errorf("%d messages stored, want %d (each 250'd one once, the stalled one not)", stored, n+2)
	}
}
