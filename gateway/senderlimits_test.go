package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/redistest"
)

// senderSession is one authenticated SMTP session over STARTTLS.
func senderSession(t *testing.T, h *e2e.Harness, user, pass string) *e2e.Raw {
	t.Helper()
	r := e2e.DialRaw(t, h.SMTP)
	r.Cmd("EHLO client.example")
	r.StartTLS()
	r.Cmd("EHLO client.example")
	if code, msg := r.AuthPlain(user, pass); code != 235 {
		t.Fatalf("AUTH %s: %d %s", user, code, msg)
	}
	return r
}

// plainMsg is a message with the given header From (none if empty) and a
// body of about size bytes.
func plainMsg(from string, size int) []byte {
	var b bytes.Buffer
	if from != "" {
		fmt.Fprintf(&b, "From: %s\r\n", from)
	}
	fmt.Fprintf(&b, "To: someone\r\nSubject: limits\r\nMessage-ID: <%d@test>\r\n\r\n", time.Now().UnixNano())
	line := strings.Repeat("x", 70) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

// wantSMTPError checks err's reply code and enhanced code.
func wantSMTPError(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode, text string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: got %v, want %d %v", what, err, code, enh)
	}
	if se.Code != code || se.EnhancedCode != enh || !strings.Contains(se.Message, text) {
		t.Errorf("%s: got %d %v %q, want %d %v containing %q", what, se.Code, se.EnhancedCode, se.Message, code, enh, text)
	}
}

// noticeFor waits for the notice sent to rcpt and returns its file.
func noticeFor(t *testing.T, h *e2e.Harness, rcpt string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range h.Notices() {
			if b, _ := os.ReadFile(f); bytes.Contains(b, []byte("To: <"+rcpt+">")) {
				return f
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no notice to %s", rcpt)
	return ""
}

// TestSenderLimits checks issue 8.5 and 8.6 over real SMTP (STARTTLS +
// AUTH): messages per hour, concurrent transactions, bytes per transaction,
// stored bytes per account, and the header From.
func TestSenderLimits(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	s := &cfg.SMTP.Senders
	s.MessagesPerHour, s.ConcurrentTxns, s.MaxTransactionBytes, s.MaxStoredBytes = 3, 2, 130_000, 150_000
	s.AllowFrom = map[string][]string{"owner@clinic.example": {"FrontDesk@clinic.example"}}
	h := e2e.Start(t, cfg)
	send := func(user, pass, from string, to []string, msg []byte) error {
		return e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: user, Pass: pass, From: user, To: to, Msg: msg})
	}

	t.Run("messages per hour", func(t *testing.T) {
		const u = "rate@clinic.example"
		pass := h.AddStaff(u)
		for i := 0; i < 2; i++ {
			if err := send(u, pass, u, []string{"rate-rcpt@example.net"}, plainMsg(u, 500)); err != nil {
				t.Fatalf("message %d: %v", i+1, err)
			}
		}
		// A message refused at DATA does not use up the budget.
		err := send(u, pass, u, []string{"rate-rcpt@example.net"}, plainMsg("ceo@clinic.example", 500))
		wantSMTPError(t, "spoofed From", err, 550, smtp.EnhancedCode{5, 7, 1}, "From header")
		if err := send(u, pass, u, []string{"rate-rcpt@example.net"}, plainMsg(u, 500)); err != nil {
			t.Fatalf("message 3: %v", err)
		}
		err = send(u, pass, u, []string{"rate-rcpt@example.net"}, plainMsg(u, 500))
		wantSMTPError(t, "message 4 in the hour", err, 451, smtp.EnhancedCode{4, 7, 0}, "Hourly sending limit of 3 messages")
		expectLogged(t, h, 451, "mail")
		// Another account has its own budget.
		other := h.AddStaff("rate2@clinic.example")
		if err := send("rate2@clinic.example", other, "", []string{"rate-rcpt@example.net"}, plainMsg("rate2@clinic.example", 500)); err != nil {
			t.Errorf("other account: %v", err)
		}
	})

	t.Run("concurrent transactions", func(t *testing.T) {
		const u = "busy@clinic.example"
		pass := h.AddStaff(u)
		a, b, c := senderSession(t, h, u, pass), senderSession(t, h, u, pass), senderSession(t, h, u, pass)
		for _, r := range []*e2e.Raw{a, b} {
			if code, msg := r.Cmd("MAIL FROM:<" + u + ">"); code != 250 {
				t.Fatalf("MAIL within the limit: %d %s", code, msg)
			}
		}
		code, msg := c.Cmd("MAIL FROM:<" + u + ">")
		expect(t, "third transaction at once", code, msg, 451, "4.7.0 This account already has 2 messages in progress")
		// A finished transaction frees its slot ...
		a.Cmd("RCPT TO:<busy-rcpt@example.net>")
		a.Cmd("DATA")
		code, msg = a.Write(append(plainMsg(u, 500), ".\r\n"...))
		expect(t, "DATA", code, msg, 250, "2.0.0")
		code, msg = c.Cmd("MAIL FROM:<" + u + ">")
		expect(t, "after one finished", code, msg, 250, "2.")
		// ... and so does one given up with RSET.
		code, msg = a.Cmd("MAIL FROM:<" + u + ">")
		expect(t, "at the limit again", code, msg, 451, "4.7.0")
		b.Cmd("RSET")
		code, msg = a.Cmd("MAIL FROM:<" + u + ">")
		expect(t, "after RSET", code, msg, 250, "2.")
		// ... and so does one whose client leaves (Logout; go-smtp runs it
		// after the 221, so the slot is free soon after, not at once).
		code, msg = b.Cmd("MAIL FROM:<" + u + ">")
		expect(t, "at the limit once more", code, msg, 451, "4.7.0")
		c.Cmd("QUIT")
		deadline := time.Now().Add(10 * time.Second)
		for code != 250 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			code, msg = b.Cmd("MAIL FROM:<" + u + ">")
		}
		expect(t, "after the other client quit mid-transaction", code, msg, 250, "2.")
	})

	t.Run("bytes per transaction", func(t *testing.T) {
		const u = "size@clinic.example"
		pass := h.AddStaff(u)
		r := senderSession(t, h, u, pass)
		code, msg := r.Cmd(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", u, 130_001))
		expect(t, "declared SIZE over the transaction bytes", code, msg, 552, "5.3.4")
		code, msg = r.Cmd(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", u, 40_000))
		expect(t, "SIZE=40000", code, msg, 250, "2.")
		for i := 1; i <= 3; i++ {
			code, msg = r.Cmd(fmt.Sprintf("RCPT TO:<size%d@example.net>", i))
			expect(t, fmt.Sprintf("recipient %d (%d bytes)", i, i*40_000), code, msg, 250, "2.")
		}
		code, msg = r.Cmd("RCPT TO:<size4@example.net>")
		expect(t, "recipient 4 (160000 bytes)", code, msg, 452, "4.5.3 Too many recipients for a message of this size")
		r.Cmd("RSET")
		// Without SIZE the recipients pass, and DATA is refused for good.
		to := []string{"size1@example.net", "size2@example.net", "size3@example.net", "size4@example.net"}
		err := send(u, pass, u, to, plainMsg(u, 40_000))
		wantSMTPError(t, "40000 x 4 at DATA", err, 552, smtp.EnhancedCode{5, 3, 4}, "Message too big for this many recipients")
		if err := send(u, pass, u, to[:3], plainMsg(u, 40_000)); err != nil {
			t.Errorf("40000 x 3: %v", err)
		}
	})

	t.Run("stored bytes per account", func(t *testing.T) {
		const u = "quota@clinic.example"
		pass := h.AddStaff(u)
		if err := send(u, pass, u, []string{"q1@example.net", "q2@example.net"}, plainMsg(u, 60_000)); err != nil {
			t.Fatalf("120000 of 150000: %v", err)
		}
		err := send(u, pass, u, []string{"q3@example.net"}, plainMsg(u, 40_000))
		wantSMTPError(t, "over the stored quota", err, 552, smtp.EnhancedCode{5, 2, 2}, "storage quota")
		if err := send(u, pass, u, []string{"q3@example.net"}, plainMsg(u, 10_000)); err != nil {
			t.Errorf("still within the quota: %v", err)
		}
		// Relayed mail stores nothing and is not held to the quota.
		if err := send(u, pass, u, []string{"colleague@clinic.example"}, plainMsg(u, 40_000)); err != nil {
			t.Errorf("relay: %v", err)
		}
	})

	t.Run("header From", func(t *testing.T) {
		const owner, intruder = "owner@clinic.example", "intruder@clinic.example"
		ownerPass, intruderPass := h.AddStaff(owner), h.AddStaff(intruder)
		for _, from := range []string{"ceo@clinic.example", "\"owner@clinic.example\" <ceo@clinic.example>", owner + ", ceo@clinic.example"} {
			err := send(owner, ownerPass, owner, []string{"from-rcpt@example.net"}, plainMsg(from, 500))
			wantSMTPError(t, "From: "+from, err, 550, smtp.EnhancedCode{5, 7, 1}, "From header must be your own address")
		}
		// Two From fields: readers differ in which they show.
		two := append([]byte("From: "+owner+"\r\n"), plainMsg("ceo@clinic.example", 500)...)
		err := send(owner, ownerPass, owner, []string{"from-rcpt@example.net"}, two)
		wantSMTPError(t, "two From fields", err, 550, smtp.EnhancedCode{5, 7, 1}, "exactly one From header")
		// The alias the admin allows the owner, and only the owner.
		err = send(intruder, intruderPass, intruder, []string{"from-rcpt@example.net"}, plainMsg("frontdesk@clinic.example", 500))
		wantSMTPError(t, "someone else's alias", err, 550, smtp.EnhancedCode{5, 7, 1}, "From header")
		expectLogged(t, h, 550, "data")
		if err := send(owner, ownerPass, owner, []string{"alias-rcpt@example.net"}, plainMsg("Front Desk <frontdesk@clinic.example>", 500)); err != nil {
			t.Fatalf("allowed alias: %v", err)
		}
		// No From at all: the envelope sender's is added.
		if err := send(intruder, intruderPass, intruder, []string{"nofrom-rcpt@example.net"}, plainMsg("", 500)); err != nil {
			t.Fatalf("no From: %v", err)
		}

		// The recipient sees who signed in to send it, beside "verified".
		for _, tc := range []struct{ rcpt, from, sentBy string }{
			{"alias-rcpt@example.net", "Front Desk <frontdesk@clinic.example>", owner},
			{"nofrom-rcpt@example.net", intruder, intruder},
		} {
			c := h.Client()
			c.JSON("POST", "/api/v1/claim", map[string]string{"token": e2e.ClaimToken(t, noticeFor(t, h, tc.rcpt)),
				"password": "a very good passphrase"}, 200, nil)
			var list listJSON
			c.JSON("GET", "/api/v1/messages", nil, 200, &list)
			if len(list.Messages) != 1 || list.Messages[0].From != tc.from {
				t.Fatalf("%s inbox: %+v", tc.rcpt, list)
			}
			var m struct {
				Signature string `json:"signature"`
				SentBy    string `json:"sent_by"`
			}
			c.JSON("GET", "/api/v1/messages/"+list.Messages[0].ID, nil, 200, &m)
			if m.Signature != "verified" || m.SentBy != tc.sentBy {
				t.Errorf("%s: API signature %q sent_by %q, want verified and %s", tc.rcpt, m.Signature, m.SentBy, tc.sentBy)
			}
			st, _, page := c.Do("GET", "/messages/"+list.Messages[0].ID, nil, nil)
			if st != 200 || !strings.Contains(string(page), "✓ Verified") ||
				!strings.Contains(string(page), "Sent by <strong>"+tc.sentBy+"</strong>") {
				t.Errorf("%s: message page %d lacks the verified line or \"Sent by %s\":\n%s", tc.rcpt, st, tc.sentBy, page)
			}
		}
	})
}

// TestCommitBatches: a message to many portal recipients is sealed and
// committed in batches of at most smtp.senders.commit_batch_bytes, and
// every copy and notice still arrives.
func TestCommitBatches(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.SMTP.Senders.CommitBatchBytes = 1 << 20
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	var to []string
	for i := 0; i < 8; i++ {
		to = append(to, fmt.Sprintf("batch%d@example.net", i))
	}
	// About 300 KiB a copy: three fit in 1 MiB, so 3 + 3 + 2.
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: to, Msg: plainMsg(staff, 300<<10)}); err != nil {
		t.Fatal(err)
	}
	logs := h.Logs.String()
	if n := strings.Count(logs, "committed batch"); n != 3 {
		t.Errorf("%d batches committed, want 3", n)
	}
	for _, want := range []string{"copies=3", "copies=2"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no batch with %s", want)
		}
	}
	if n := strings.Count(logs, "msg=stored"); n != 8 {
		t.Errorf("%d copies stored, want 8", n)
	}
	h.WaitNotices(8)
}

// TestSenderLimitsTwoNodes: the counted limits hold across two nodes that
// share Redis: transactions in flight and messages per hour are counted
// once for the account, whichever node takes the connection.
func TestSenderLimitsTwoNodes(t *testing.T) {
	srv := redistest.Start(t) // skips without redis-server (fails in CI)
	dir := t.TempDir()
	cfg := func() config.Config {
		c := e2e.Config(dir)
		c.Redis.URL, c.Redis.Prefix = "redis://"+srv.Addr+"/0", "limits-nodes:"
		c.SMTP.Senders.MessagesPerHour, c.SMTP.Senders.ConcurrentTxns = 3, 1
		return c
	}
	a := e2e.Start(t, cfg()) // creates the keys and database that b opens
	b := e2e.Start(t, cfg())
	const u = "nodes@clinic.example"
	pass := a.AddStaff(u)

	ra, rb := senderSession(t, a, u, pass), senderSession(t, b, u, pass)
	code, msg := ra.Cmd("MAIL FROM:<" + u + ">")
	expect(t, "MAIL on node A", code, msg, 250, "2.")
	code, msg = rb.Cmd("MAIL FROM:<" + u + ">")
	expect(t, "MAIL on node B while A's is open", code, msg, 451, "4.7.0 This account already has 1 message in progress")
	ra.Cmd("RCPT TO:<nodes-rcpt@example.net>")
	ra.Cmd("DATA")
	code, msg = ra.Write(append(plainMsg(u, 500), ".\r\n"...))
	expect(t, "DATA on node A", code, msg, 250, "2.0.0")

	for i, h := range []*e2e.Harness{b, a} {
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: u, Pass: pass, From: u, To: []string{"nodes-rcpt@example.net"},
			Msg: plainMsg(u, 500)}); err != nil {
			t.Fatalf("message %d: %v", i+2, err)
		}
	}
	err := e2e.Send(e2e.SendOptions{Addr: b.SMTP, User: u, Pass: pass, From: u, To: []string{"nodes-rcpt@example.net"}, Msg: plainMsg(u, 500)})
	wantSMTPError(t, "message 4 in the hour, on node B", err, 451, smtp.EnhancedCode{4, 7, 0}, "Hourly sending limit of 3 messages")
	// The counts are in Redis under the configured prefix, keyed by user id.
	keys, kerr := srv.Client(t).Keys(context.Background(), "limits-nodes:quota:*").Result()
	if kerr != nil || len(keys) == 0 {
		t.Errorf("no quota keys in Redis: %v %v", keys, kerr)
	}
	for _, k := range keys {
		if strings.Contains(k, "@") {
			t.Errorf("Redis key %q holds an address", k)
		}
	}
}

// BenchmarkManyRecipientsMemory measures the heap one message to many
// portal recipients holds while it is sealed and committed, with the
// default commit batch (32 MiB) and with one that takes everything at once
// (as before issue 8.5). Run with -benchtime 1x; figures in docs/perf.md.
func BenchmarkManyRecipientsMemory(b *testing.B) {
	for _, batch := range []int64{32 << 20, 1 << 30} {
		b.Run(fmt.Sprintf("batch=%dMiB", batch>>20), func(b *testing.B) {
			if b.N > 3 {
				// One send seals 100 MiB: a -benchtime in thousands would take hours.
				b.Skip("run alone with -benchtime 1x")
			}
			cfg := e2e.Config(b.TempDir())
			cfg.SMTP.Senders.CommitBatchBytes = batch
			h := e2e.Start(b, cfg)
			h.AddStaff(staff)
			sender, err := h.G.Identity.UserByEmail(context.Background(), staff)
			if err != nil {
				b.Fatal(err)
			}
			raw := plainMsg(staff, 2<<20)
			var peak uint64
			for i := 0; i < b.N; i++ {
				var to []string
				for r := 0; r < 50; r++ {
					to = append(to, fmt.Sprintf("mem%d-%d@example.net", i, r))
				}
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				base := ms.HeapInuse
				stop, done := make(chan struct{}), make(chan uint64)
				go func() {
					var max uint64
					for {
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > base && ms.HeapInuse-base > max {
							max = ms.HeapInuse - base
						}
						select {
						case <-stop:
							done <- max
							return
						case <-time.After(2 * time.Millisecond):
						}
					}
				}()
				_, err := h.G.Intake.Accept(context.Background(), intake.Envelope{Sender: sender, From: staff, To: to}, raw)
				close(stop)
				peak = max(peak, <-done)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}
