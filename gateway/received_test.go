package gateway_test

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/internal/e2e"
)

// TestStoredMessageHeaders: what is stored is the Received trace header,
// then the Date, Message-ID and From the submission lacked (only those),
// then the submitted bytes unchanged. smtpd reads DATA straight in after
// the trace header (issue 12.1), so this pins the layout down.
func TestStoredMessageHeaders(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	escrow := devEscrow(t, cfg)
	ctx := context.Background()

	full := []byte("From: Dr Lee <" + staff + ">\r\nTo: <hdr1@example.net>\r\nDate: Sun, 06 Dec 2026 17:00:00 +0000\r\n" +
		"Message-ID: <full@clinic.example>\r\nSubject: complete\r\n\r\nbody one\r\n")
	bare := []byte("To: <hdr2@example.net>\r\nSubject: no date, id or from\r\n\r\nbody two\r\n")
	received := `^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby \S+ \(phigate\) with ESMTPSA id \S+;\r\n\t[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n`
	for _, c := range []struct {
		rcpt  string
		msg   []byte
		added string // expected between the trace header and the submitted bytes
	}{
		{"hdr1@example.net", full, `^$`},
		{"hdr2@example.net", bare, `^Date: [^\r\n]+\r\nMessage-ID: <[^@>]+@[^>]+>\r\nFrom: <` + regexp.QuoteMeta(staff) + `>\r\n$`},
	} {
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{c.rcpt}, Msg: c.msg}); err != nil {
			t.Fatalf("send to %s: %v", c.rcpt, err)
		}
		u, err := h.G.Identity.UserByEmail(ctx, c.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		list, err := h.G.Store.ListMessages(ctx, u.ID, time.Now())
		if err != nil || len(list) != 1 {
			t.Fatalf("messages for %s: %d, %v", c.rcpt, len(list), err)
		}
		m, err := h.G.Store.GetMessage(ctx, list[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		raw, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.KeyPackets, Data: m.Body}, escrow, h.G.Keys.Gateway)
		if err != nil || sig != pcrypto.SigVerified {
			t.Fatalf("open with the escrow key: %v, %v", sig, err)
		}
		loc := regexp.MustCompile(received).FindIndex(raw)
		if loc == nil {
			t.Fatalf("%s: stored message does not start with the trace header:\n%.300q", c.rcpt, raw)
		}
		rest := raw[loc[1]:]
		if !bytes.HasSuffix(rest, c.msg) {
			t.Fatalf("%s: the submitted bytes are not stored unchanged at the end:\n%q", c.rcpt, rest)
		}
		if added := rest[:len(rest)-len(c.msg)]; !regexp.MustCompile(c.added).Match(added) {
			t.Errorf("%s: headers added: %q, want %s", c.rcpt, added, c.added)
		}
	}
}
