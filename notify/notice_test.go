package notify

import (
	"bytes"
	"io"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/phigate/phigate/config"
)

var testOrg = config.Org{
	Name:       "Riverside Clinic",
	Domains:    []string{"riverside.example"},
	Contact:    "privacy@riverside.example",
	NotifyFrom: "no-reply@riverside.example",
}

type renderedNotice struct {
	header mail.Header
	parts  map[string]string // content type -> decoded body
	order  []string
}

func parseNotice(t *testing.T, raw []byte) renderedNotice {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("notice is not a readable message: %v", err)
	}
	out := renderedNotice{header: r.Header, parts: map[string]string{}}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ih, ok := p.Header.(*mail.InlineHeader)
		if !ok {
			t.Fatalf("notice has a non-inline part (%T): no attachments in notices, ever", p.Header)
		}
		ct, params, _ := ih.ContentType()
		if params["charset"] != "utf-8" {
			t.Errorf("%s part charset %q", ct, params["charset"])
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		out.parts[ct] = string(b)
		out.order = append(out.order, ct)
	}
	return out
}

var addrRE = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+`)

var expires = time.Date(2026, 4, 1, 12, 30, 0, 0, time.UTC)

const expiresText = "1 Apr 2026, 12:30 UTC"

func TestRenderHeaders(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 15, 0, 0, time.UTC)
	n := Notice{To: "pat@example.net", Link: "https://portal.riverside.example/claim/tok123", Claim: true, ExpiresAt: expires}
	raw, err := Render(n, testOrg, "gw.riverside.example", "outbox-42", now)
	if err != nil {
		t.Fatal(err)
	}
	m := parseNotice(t, raw)
	h := m.header
	if got := h.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted %q", got)
	}
	if id, err := h.MessageID(); err != nil || id != "outbox-42@gw.riverside.example" {
		t.Errorf("Message-Id %q %v", id, err)
	}
	if subj, _ := h.Subject(); subj != "You have a secure message from Riverside Clinic" {
		t.Errorf("Subject %q", subj)
	}
	from, _ := h.AddressList("From")
	if len(from) != 1 || from[0].Name != "Riverside Clinic" || from[0].Address != "no-reply@riverside.example" {
		t.Errorf("From %v", from)
	}
	to, _ := h.AddressList("To")
	if len(to) != 1 || to[0].Address != "pat@example.net" || to[0].Name != "" {
		t.Errorf("To %v", to)
	}
	if d, err := h.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date %v %v", d, err)
	}
	ct, _, _ := h.ContentType()
	if ct != "multipart/alternative" {
		t.Errorf("Content-Type %q", ct)
	}
	// Exactly these headers: nothing else can carry anything of a message.
	var keys []string
	fields := h.Fields()
	for fields.Next() {
		keys = append(keys, strings.ToLower(fields.Key()))
	}
	sort.Strings(keys)
	want := []string{"auto-submitted", "content-language", "content-type", "date", "from", "message-id", "mime-version", "subject", "to", "x-auto-response-suppress"}
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("headers %v, want exactly %v", keys, want)
	}
	if len(m.order) != 2 || m.order[0] != "text/plain" || m.order[1] != "text/html" {
		t.Errorf("parts %v, want text/plain then text/html", m.order)
	}
	// A retry keeps the Message-Id.
	raw2, _ := Render(n, testOrg, "gw.riverside.example", "outbox-42", now.Add(time.Hour))
	h2 := parseNotice(t, raw2).header
	if id, _ := h2.MessageID(); id != "outbox-42@gw.riverside.example" {
		t.Errorf("retry Message-Id %q", id)
	}
}

// The text part is exactly the template filled with the org and the
// notice: nothing else (no subject, sender, body or file name) can be in it.
func TestRenderContentIsOnlyTheNotice(t *testing.T) {
	for _, claim := range []bool{true, false} {
		n := Notice{To: "pat@example.net", Link: "https://portal.riverside.example/x/abc", Claim: claim, ExpiresAt: expires}
		raw, err := Render(n, testOrg, "gw.riverside.example", "ob1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m := parseNotice(t, raw)
		action := "To read it, sign in to the secure message portal:"
		if claim {
			action = "To read it, open this link and choose a password:"
		}
		wantText := "Riverside Clinic has sent you a secure message.\n\n" + action + "\nhttps://portal.riverside.example/x/abc\n\n" +
			"The message can be read until " + expiresText + ".\n\n" +
			"This notice does not contain the message itself. If you were not\nexpecting it, or have questions, contact privacy@riverside.example.\n" +
			"Riverside Clinic will never ask for your password by email.\n"
		if got := strings.ReplaceAll(m.parts["text/plain"], "\r\n", "\n"); got != wantText {
			t.Errorf("claim=%v text part:\n%q\nwant\n%q", claim, got, wantText)
		}
		html := m.parts["text/html"]
		for _, must := range []string{"Riverside Clinic", `href="https://portal.riverside.example/x/abc"`, "privacy@riverside.example", expiresText} {
			if !strings.Contains(html, must) {
				t.Errorf("claim=%v html lacks %q", claim, must)
			}
		}
		for _, never := range []string{"<script", "<img", "src=", "http://"} {
			if strings.Contains(html, never) {
				t.Errorf("html contains %q", never)
			}
		}
		// The only addresses in the whole notice are the recipient's, the
		// org's own and the Message-Id.
		hdr, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		all := string(hdr) + "\n" + m.parts["text/plain"] + "\n" + html
		for _, a := range addrRE.FindAllString(all, -1) {
			switch strings.TrimRight(a, ".") {
			case "pat@example.net", "privacy@riverside.example", "no-reply@riverside.example", "ob1@gw.riverside.example":
			default:
				t.Errorf("unexpected address %q in notice", a)
			}
		}
	}
}

func TestRenderEscapes(t *testing.T) {
	org := testOrg
	org.Name = `Clinic <b>"&"</b>`
	n := Notice{To: "pat@example.net\r\nBcc: evil@attacker.example", Link: `javascript:alert(1)`, ExpiresAt: expires}
	raw, err := Render(n, org, "gw.riverside.example", "ob1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := parseNotice(t, raw)
	if m.header.Get("Bcc") != "" || bytes.Contains(raw, []byte("\nBcc:")) {
		t.Errorf("header injected:\n%s", raw)
	}
	html := m.parts["text/html"]
	if strings.Contains(html, "<b>") || strings.Contains(html, `href="javascript:`) {
		t.Errorf("html not escaped:\n%s", html)
	}
	if subj, _ := m.header.Subject(); subj != "You have a secure message from "+org.Name {
		t.Errorf("subject %q", subj)
	}
	// A CR/LF in the id is refused, never written as a header.
	raw, err = Render(Notice{To: "p@example.net"}, testOrg, "gw", "ob\r\nX-Injected: 1", time.Now())
	if err == nil && bytes.Contains(raw, []byte("\nX-Injected:")) {
		t.Errorf("header injected through the id:\n%s", raw)
	}
}

func TestNoticeMarshal(t *testing.T) {
	b, err := Notice{To: "p@example.net", Link: "https://x/claim/t", Claim: true, ExpiresAt: expires}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"to":"p@example.net","link":"https://x/claim/t","claim":true,"expires_at":"2026-04-01T12:30:00Z"}` {
		t.Errorf("payload %s", b)
	}
}

// A claim link that dies before the message (claim_ttl 7 days, message 30)
// is given its own date in both parts; a link as long-lived as the message,
// or one without a date of its own, adds no line.
func TestRenderStatesTheLinkLifetime(t *testing.T) {
	linkEnds := expires.Add(-23 * 24 * time.Hour)
	const linkText = "9 Mar 2026, 12:30 UTC"
	cases := []struct {
		name     string
		linkEnds time.Time
		want     bool
	}{
		{"claim link shorter than the message", linkEnds, true},
		{"no link date", time.Time{}, false},
		{"link as long as the message", expires, false},
	}
	for _, c := range cases {
		n := Notice{To: "pat@example.net", Link: "https://portal.riverside.example/claim/tok", Claim: true, ExpiresAt: expires, LinkExpiresAt: c.linkEnds}
		raw, err := Render(n, testOrg, "gw.riverside.example", "ob1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m := parseNotice(t, raw)
		text := strings.ReplaceAll(m.parts["text/plain"], "\r\n", "\n")
		html := m.parts["text/html"]
		for part, body := range map[string]string{"text": text, "html": html} {
			if got := strings.Contains(body, "This link works until"); got != c.want {
				t.Errorf("%s: %s part says the link's end: %v, want %v:\n%s", c.name, part, got, c.want, body)
			}
			if c.want && (!strings.Contains(body, linkText) || !strings.Contains(body, expiresText)) {
				t.Errorf("%s: %s part lacks the link's end %q or the message's %q:\n%s", c.name, part, linkText, expiresText, body)
			}
		}
		if c.want && !strings.Contains(text, "This link works until "+linkText+".\nThe message can be read until "+expiresText+".") {
			t.Errorf("%s: text part:\n%s", c.name, text)
		}
	}
}
