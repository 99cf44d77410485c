// Package e2e starts a real gateway on loopback ports for tests and gives
// them real clients: go-smtp for submission, net/http with a cookie jar for
// the portal and API.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/syncbuf"
	"github.com/phigate/phigate/logx"
)

// Harness is one running gateway.
type Harness struct {
	T       testing.TB
	Cfg     config.Config
	G       *gateway.Gateway
	Logs    *syncbuf.Buffer
	SMTP    string
	SMTPS   string
	HTTPS   string
	BaseURL string
}

// Config returns a dev configuration in dir with loopback port-0 listeners
// and cheap password hashing.
func Config(dir string) config.Config {
	cfg := config.Default()
	cfg.Server.DataDir = dir
	cfg.Server.SMTPAddr, cfg.Server.SMTPSAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	p := pcrypto.TestPasswordParams
	cfg.Keys.PasswordTime, cfg.Keys.PasswordMemoryKiB, cfg.Keys.PasswordThreads = p.Time, p.MemoryKiB, p.Threads
	cfg.Log.Level = "debug"
	cfg.Metrics.Addr = "127.0.0.1:0"
	// Each message its own notice: tests count notices per message; the
	// batching tests turn the window on (issue 10.4).
	cfg.Notify.BatchWindow = config.Duration{}
	cfg.ApplyDev()
	return cfg
}

// Start runs a gateway for cfg until the test ends.
func Start(t testing.TB, cfg config.Config) *Harness {
	t.Helper()
	return StartWith(t, cfg, nil)
}

// StartWith is Start with a hook that may adjust the opened gateway before
// it starts (fields its services read from their own goroutines).
func StartWith(t testing.TB, cfg config.Config, before func(*gateway.Gateway)) *Harness {
	t.Helper()
	if cfg.Store.URL == "" {
		cfg.Store.URL = storeURL(t, cfg.Server.DataDir)
	}
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	log, closer, err := gateway.OpenLogger(cfg, logs)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(g)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := &Harness{T: t, Cfg: cfg, G: g, Logs: logs}
	h.SMTP, h.SMTPS, h.HTTPS = g.Addrs()
	h.BaseURL = "https://" + h.HTTPS
	t.Cleanup(func() {
		g.Close()
		closer.Close()
	})
	return h
}

// Stop closes the gateway (for restart tests); closing twice is harmless.
func (h *Harness) Stop() {
	h.G.Close()
}

// AddStaff creates a staff account and an app password; returns the secret.
func (h *Harness) AddStaff(email string) string {
	h.T.Helper()
	ctx := context.Background()
	if _, err := h.G.Identity.AddUser(ctx, email, "staff", "staff portal password 123"); err != nil {
		h.T.Fatal(err)
	}
	secret, err := h.G.Identity.AddAppPassword(ctx, email, "test")
	if err != nil {
		h.T.Fatal(err)
	}
	return secret
}

// SendOptions describe one submission.
type SendOptions struct {
	Addr     string
	Implicit bool // implicit TLS instead of STARTTLS
	NoTLS    bool // stay in the clear (negative tests)
	User     string
	Pass     string
	Login    bool // AUTH LOGIN instead of PLAIN
	From     string
	To       []string
	Msg      []byte
	SkipAuth bool
}

// Dial opens a client per o (STARTTLS unless Implicit or NoTLS) without AUTH.
func Dial(o SendOptions) (*smtp.Client, error) {
	tc := &tls.Config{InsecureSkipVerify: true}
	var c *smtp.Client
	var err error
	switch {
	case o.Implicit:
		c, err = smtp.DialTLS(o.Addr, tc)
	case o.NoTLS:
		c, err = smtp.Dial(o.Addr)
	default:
		c, err = smtp.DialStartTLS(o.Addr, tc)
	}
	return c, err
}

// Send submits one message and returns the server's error, if any (an
// *smtp.SMTPError carries the reply code).
func Send(o SendOptions) error {
	c, err := Dial(o)
	if err != nil {
		return err
	}
	defer c.Close()
	if !o.SkipAuth {
		var a sasl.Client = sasl.NewPlainClient("", o.User, o.Pass)
		if o.Login {
			a = sasl.NewLoginClient(o.User, o.Pass)
		}
		if err := c.Auth(a); err != nil {
			return err
		}
	}
	if err := c.SendMail(o.From, o.To, bytes.NewReader(o.Msg)); err != nil {
		return err
	}
	return c.Quit()
}

// Code returns the SMTP reply code of err, or 0.
func Code(err error) int {
	if se, ok := err.(*smtp.SMTPError); ok {
		return se.Code
	}
	return 0
}

// Notices returns the maildrop files, oldest first.
func (h *Harness) Notices() []string {
	files, _ := filepath.Glob(filepath.Join(h.Cfg.Server.DataDir, "maildrop", "*.eml"))
	sort.Strings(files)
	return files
}

// WaitNotices waits until at least n notices exist.
func (h *Harness) WaitNotices(n int) []string {
	h.T.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if f := h.Notices(); len(f) >= n {
			return f
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.T.Fatalf("expected %d notices, have %d", n, len(h.Notices()))
	return nil
}

var claimRe = regexp.MustCompile(`/claim/([A-Za-z0-9_-]{20,})`)

// ClaimToken extracts the claim token from a notice file.
func ClaimToken(t testing.TB, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := claimRe.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no claim link in %s", file)
	}
	return string(m[1])
}

// Client is a portal/API client with its own cookie jar.
type Client struct {
	T    testing.TB
	Base string
	HTTP *http.Client
}

func (h *Harness) Client() *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{T: h.T, Base: h.BaseURL, HTTP: &http.Client{
		Jar:       jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		// Tests look at redirects themselves.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

// Do sends a request and returns status, headers and body.
func (c *Client) Do(method, path string, body any, hdr map[string]string) (int, http.Header, []byte) {
	c.T.Helper()
	var r io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		r, ct = strings.NewReader(b), "application/x-www-form-urlencoded"
	default:
		j, _ := json.Marshal(b)
		r, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, c.Base+path, r)
	if err != nil {
		c.T.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// JSON does a request and decodes a JSON answer into out, failing the test
// unless the status is want.
func (c *Client) JSON(method, path string, body any, want int, out any) {
	c.T.Helper()
	st, _, b := c.Do(method, path, body, nil)
	if st != want {
		c.T.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.T.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// FreeAddr returns a loopback address with a currently free port.
func FreeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Multipart builds a test message with text, HTML and one attachment.
func Multipart(from, fromName, to, subject, text, html, attName string, att []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d@test>\r\nMIME-Version: 1.0\r\n",
		fromName, from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	b.WriteString("Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n")
	b.WriteString("--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n")
	fmt.Fprintf(&b, "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", text)
	fmt.Fprintf(&b, "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n%s\r\n--alt--\r\n", html)
	fmt.Fprintf(&b, "--outer\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", attName)
	b.WriteString(wrap76(att))
	b.WriteString("\r\n--outer--\r\n")
	return b.Bytes()
}

func wrap76(data []byte) string {
	enc := base64Std(data)
	var out strings.Builder
	for i := 0; i < len(enc); i += 76 {
		out.WriteString(enc[i:min(i+76, len(enc))])
		out.WriteString("\r\n")
	}
	return out.String()
}

// Silence keeps the default slog quiet during tests.
func Silence() { slog.SetDefault(logx.New(io.Discard, "text", "error")) }
