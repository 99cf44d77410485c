package gateway_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
)

const staff = "dr.lee@clinic.example"

type msgJSON struct {
	ID      string `json:"id"`
	Headers struct {
		From, To, Subject string
	} `json:"headers"`
	Text        string `json:"text"`
	HTML        string `json:"html"`
	Signature   string `json:"signature"`
	Attachments []struct {
		ID          string `json:"id"`
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		Size        int64  `json:"size"`
	} `json:"attachments"`
}

type listJSON struct {
	Messages []struct {
		ID, From, Subject string
		Read              bool
		Attachments       int
		Signature         string
	} `json:"messages"`
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestEndToEnd follows one message from SMTP (STARTTLS + AUTH) through the
// notice, the claim and sign-in, to the exact text and attachment bytes.
func TestEndToEnd(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	att := randBytes(5000)
	text := "Dear patient,\r\nyour results are attached.\r\n"
	msg := e2e.Multipart(staff, "Dr Lee", "pat@example.net", "Your results", text, "<p>See <b>attached</b></p>", "results.bin", att)
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"pat@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	notices := h.WaitNotices(1)
	notice, _ := os.ReadFile(notices[0])
	for _, must := range []string{"Auto-Submitted: auto-generated", "Message-Id: <", "To: <pat@example.net>", "text/plain", "text/html"} {
		if !bytes.Contains(notice, []byte(must)) {
			t.Errorf("notice lacks %q", must)
		}
	}
	token := e2e.ClaimToken(t, notices[0])

	c := h.Client()
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": "a very good passphrase"}, 200, nil)
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 1 || list.Messages[0].Subject != "Your results" || list.Messages[0].Read ||
		list.Messages[0].Attachments != 1 || list.Messages[0].From != "Dr Lee <"+staff+">" {
		t.Fatalf("inbox: %+v", list)
	}
	id := list.Messages[0].ID
	var m msgJSON
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
	if m.Text != text {
		t.Errorf("text %q, want %q", m.Text, text)
	}
	if m.Signature != "verified" {
		t.Errorf("signature %q", m.Signature)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Filename != "results.bin" || m.Attachments[0].Size != int64(len(att)) {
		t.Fatalf("attachments %+v", m.Attachments)
	}
	st, hdr, body := c.Do("GET", "/api/v1/messages/"+id+"/attachments/"+m.Attachments[0].ID, nil, nil)
	if st != 200 || !bytes.Equal(body, att) {
		t.Fatalf("attachment: status %d, %d bytes, equal=%v", st, len(body), bytes.Equal(body, att))
	}
	if !strings.HasPrefix(hdr.Get("Content-Disposition"), "attachment") || hdr.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("attachment headers: %v", hdr)
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if !list.Messages[0].Read {
		t.Error("message not marked read after opening")
	}

	// Sign out, sign back in with the password chosen at claim.
	c.JSON("POST", "/api/v1/logout", nil, 204, nil)
	if st, _, _ := c.Do("GET", "/api/v1/messages", nil, nil); st != 401 {
		t.Fatalf("after logout: %d", st)
	}
	c.JSON("POST", "/api/v1/login", map[string]string{"email": "pat@example.net", "password": "a very good passphrase"}, 200, nil)
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
	if m.Text != text {
		t.Error("text differs after sign-in")
	}
	// A second message to the now active account links to sign-in.
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTPS, Implicit: true, Login: true, User: staff, Pass: pass, From: staff,
		To: []string{"PAT@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	n2, _ := os.ReadFile(h.WaitNotices(2)[1])
	if bytes.Contains(n2, []byte("/claim/")) || !bytes.Contains(n2, []byte("/login")) {
		t.Errorf("notice to an active account should link to sign-in:\n%s", n2)
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 2 {
		t.Fatalf("want 2 messages, got %d", len(list.Messages))
	}
}

// TestPortalPages walks the server-rendered pages a patient uses.
func TestPortalPages(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	msg := e2e.Multipart(staff, "Dr Lee", "pat@example.net", "Visit summary", "plain body",
		`<p onclick="x()">Hi<script>alert(1)</script><img src="https://tracker.example/p.gif"><img src="data:image/png;base64,iVBORw0KGgo="></p>`, "a.txt", []byte("hello"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"pat@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	c := h.Client()
	st, _, body := c.Do("GET", "/claim/"+token, nil, nil)
	if st != 200 || !bytes.Contains(body, []byte(`name="password"`)) {
		t.Fatalf("claim page: %d", st)
	}
	st, _, body = c.Do("POST", "/claim/"+token, "password=short&confirm=short", nil)
	if st != 400 || !bytes.Contains(body, []byte("at least 12 characters")) {
		t.Fatalf("short password: %d %s", st, body)
	}
	st, _, _ = c.Do("POST", "/claim/"+token, "password=correct+horse+battery&confirm=correct+horse+battery2", nil)
	if st != 400 {
		t.Fatalf("mismatch: %d", st)
	}
	st, hdr, _ := c.Do("POST", "/claim/"+token, "password=correct+horse+battery&confirm=correct+horse+battery", nil)
	if st != 303 || !strings.HasPrefix(hdr.Get("Location"), "/messages/") {
		t.Fatalf("claim: %d -> %s", st, hdr.Get("Location"))
	}
	for _, ck := range c.HTTP.Jar.Cookies(mustURL(h.BaseURL)) {
		if ck.Name != "__Host-phigate" {
			t.Errorf("unexpected cookie %s", ck.Name)
		}
	}
	page := hdr.Get("Location")
	st, hdr, body = c.Do("GET", page, nil, nil)
	if st != 200 || !bytes.Contains(body, []byte("Visit summary")) || !bytes.Contains(body, []byte("Verified")) ||
		!bytes.Contains(body, []byte("a.txt")) || !bytes.Contains(body, []byte(`sandbox="`)) {
		t.Fatalf("message page %d:\n%s", st, body)
	}
	if hdr.Get("Cache-Control") != "no-store" || !strings.Contains(hdr.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("message page headers: %v", hdr)
	}
	st, hdr, body = c.Do("GET", page+"/content", nil, nil)
	if st != 200 {
		t.Fatalf("content frame: %d", st)
	}
	csp := hdr.Get("Content-Security-Policy")
	if !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("content CSP %q", csp)
	}
	for _, bad := range []string{"<script", "onclick", "tracker.example"} {
		if bytes.Contains(body, []byte(bad)) {
			t.Errorf("sanitised HTML still has %q: %s", bad, body)
		}
	}
	if !bytes.Contains(body, []byte("data:image/png")) {
		t.Errorf("inline image was dropped: %s", body)
	}
	st, _, body = c.Do("GET", "/inbox", nil, nil)
	if st != 200 || !bytes.Contains(body, []byte("Visit summary")) {
		t.Fatalf("inbox %d", st)
	}
	st, hdr, _ = c.Do("POST", "/logout", "", nil)
	if st != 303 || hdr.Get("Clear-Site-Data") == "" {
		t.Fatalf("logout %d %v", st, hdr)
	}
	st, hdr, _ = c.Do("GET", page, nil, nil)
	if st != 303 || !strings.HasPrefix(hdr.Get("Location"), "/login") {
		t.Fatalf("after logout: %d %s", st, hdr.Get("Location"))
	}
	// Sign in through the form.
	st, hdr, _ = c.Do("POST", "/login", "email=pat%40example.net&password=wrong+password+here", nil)
	if st != 401 {
		t.Fatalf("bad login: %d", st)
	}
	st, hdr, _ = c.Do("POST", "/login", "email=pat%40example.net&password=correct+horse+battery", nil)
	if st != 303 || hdr.Get("Location") != "/inbox" {
		t.Fatalf("login: %d %s", st, hdr.Get("Location"))
	}
}

func newCanary(label string) string {
	return "CANARY" + label + hex.EncodeToString(randBytes(8))
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
