package main

// Process-level tests: the phigate binary is built once (TestMain) and driven
// as a real process, the way an operator and a mail client meet it. They
// check what only a real process can show: that a 250 survives SIGKILL
// (DESIGN.md "A 250 means durable"), that state survives a restart, that
// production mode refuses unsafe settings, and that the admin CLI works
// against the data folder of a running server.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/syncbuf"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	pcrypto "github.com/phigate/phigate/crypto"
)

// raceBuild is set by process_race_test.go when the tests run with -race; the
// binary is then built with -race too and any report fails the test.
var raceBuild bool

// binPath is the phigate binary TestMain built for this run.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "phigate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "process tests:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "phigate")
	args := []string{"build", "-o", binPath}
	if raceBuild {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	out, err := exec.CommandContext(ctx, "go", append(args, ".")...).CombinedOutput()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "process tests: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// Process harness

const (
	staffEmail    = "dr.lee@clinic.example"
	staffPassword = "staff portal password 1"
	bannerTimeout = 60 * time.Second
	exitTimeout   = 20 * time.Second
	noticeTimeout = 15 * time.Second
)

// childEnv is the test's environment without any PHIGATE_ setting (an unknown
// one makes phigate refuse to start), plus cheap password hashing and extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PHIGATE_") {
			env = append(env, kv)
		}
	}
	// Each message its own notice (no batching window, issue 10.4): the
	// tests count notices per message.
	env = append(env, "PHIGATE_KEYS_PASSWORD_TIME=1", "PHIGATE_KEYS_PASSWORD_MEMORY_KIB=8192",
		"PHIGATE_KEYS_PASSWORD_THREADS=1", "PHIGATE_NOTIFY_BATCH_WINDOW=0s")
	return append(env, extra...)
}

// proc is one running `phigate serve`.
type proc struct {
	t          *testing.T
	cmd        *exec.Cmd
	stdout     *syncbuf.Buffer
	stderrPath string
	done       chan struct{} // closed once the process has exited
	waitErr    error

	SMTP, SMTPS, HTTPS string
	Metrics            string // the metrics listener's bound address
}

var serveSeq atomic.Int64

// startProc starts `phigate args...`; the process is killed when the test
// ends. Its stderr goes to a file whose tail failure messages show.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	errPath := filepath.Join(t.TempDir(), fmt.Sprintf("serve-%d.stderr", serveSeq.Add(1)))
	ef, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, stdout: &syncbuf.Buffer{}, stderrPath: errPath, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = ef
	if err := p.cmd.Start(); err != nil {
		ef.Close()
		t.Fatalf("start phigate: %v", err)
	}
	ef.Close()
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(exitTimeout):
			t.Errorf("phigate pid %d did not exit after SIGKILL", p.cmd.Process.Pid)
		}
		if raceBuild && strings.Contains(p.stderr(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in phigate:\n%s", p.stderr())
		}
	})
	return p
}

func (p *proc) stderr() string {
	b, _ := os.ReadFile(p.stderrPath)
	return string(b)
}

// tail is the end of the server's stderr, for failure messages.
func (p *proc) tail() string {
	s := p.stderr()
	const max = 6000
	if len(s) > max {
		s = "...\n" + s[len(s)-max:]
	}
	return "--- phigate stderr (" + p.stderrPath + ") ---\n" + s + "--- end ---"
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the exit status (-1 when killed by a signal); only valid after exit.
func (p *proc) exitCode() int { return p.cmd.ProcessState.ExitCode() }

var (
	reSMTP  = regexp.MustCompile(`SMTP submission \(STARTTLS\):\s+(\S+)`)
	reSMTPS = regexp.MustCompile(`SMTP implicit TLS:\s+(\S+)`)
	reHTTPS = regexp.MustCompile(`HTTPS portal:\s+https://(\S+)`)
	reMetr  = regexp.MustCompile(`metrics \(Prometheus\):\s+http://(\S+)/metrics`)
)

// waitBanner waits until the server prints its listener addresses.
func (p *proc) waitBanner() {
	p.t.Helper()
	deadline := time.Now().Add(bannerTimeout)
	for {
		out := p.stdout.String()
		a, b, c := reSMTP.FindStringSubmatch(out), reSMTPS.FindStringSubmatch(out), reHTTPS.FindStringSubmatch(out)
		m := reMetr.FindStringSubmatch(out)
		if a != nil && b != nil && c != nil && m != nil {
			p.SMTP, p.SMTPS, p.HTTPS, p.Metrics = a[1], b[1], c[1], m[1]
			return
		}
		if p.exited() {
			p.t.Fatalf("phigate exited (%v) before it was ready\nstdout:\n%s\n%s", p.waitErr, out, p.tail())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("phigate printed no banner within %s\nstdout:\n%s\n%s", bannerTimeout, out, p.tail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitExit waits (bounded) for the process to end.
func (p *proc) waitExit() {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		p.t.Fatalf("phigate did not exit within %s\n%s", exitTimeout, p.tail())
	}
}

// kill9 sends SIGKILL: no graceful shutdown, no deferred code runs.
func (p *proc) kill9() error { return p.cmd.Process.Signal(syscall.SIGKILL) }

// assertKilled checks the process really died of SIGKILL.
func (p *proc) assertKilled() {
	p.t.Helper()
	p.waitExit()
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		p.t.Fatalf("phigate was expected to die of SIGKILL, state %v\n%s", p.cmd.ProcessState, p.tail())
	}
}

// stop is a graceful SIGTERM shutdown, which must exit 0.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	p.waitExit()
	if c := p.exitCode(); c != 0 {
		p.t.Fatalf("phigate exited %d after SIGTERM, want 0\n%s", c, p.tail())
	}
}

// startDev runs `serve --dev` on dir with loopback port-0 listeners (the
// metrics listener too: a fixed port would fail beside a running gateway).
func startDev(t *testing.T, dir string) *proc {
	t.Helper()
	p := startProc(t, childEnv(), "serve", "--dev", "--data", dir,
		"--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
	p.waitBanner()
	return p
}

// cliResult is what one admin command printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs `phigate args...` to completion (bounded) with stdin.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("phigate %s: timed out\nstderr: %s", strings.Join(args, " "), errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("phigate %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
}

// addStaff creates a staff account and an app password through the CLI and
// returns the app password.
func addStaff(t *testing.T, dir, email, name string) string {
	t.Helper()
	r := runCLI(t, staffPassword+"\n", "user", "add", "--data", dir, "--email", email, "--role", "staff", "--password-stdin")
	if r.code != 0 {
		t.Fatalf("user add: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return appPassword(t, dir, email, name)
}

func appPassword(t *testing.T, dir, email, name string) string {
	t.Helper()
	r := runCLI(t, "", "user", "app-password", "--data", dir, "--email", email, "--name", name)
	if r.code != 0 {
		t.Fatalf("user app-password: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	secret := strings.TrimSpace(lines[len(lines)-1])
	if len(secret) < 20 || strings.ContainsAny(secret, " \t") {
		t.Fatalf("user app-password: no secret on the last line of:\n%s", r.stdout)
	}
	return secret
}

// ---------------------------------------------------------------------------
// SMTP client

const smtpTimeout = 60 * time.Second

// dialSMTP connects with STARTTLS (or implicit TLS) and a bounded deadline.
func dialSMTP(addr string, implicit bool) (*smtp.Client, error) {
	tc := &tls.Config{InsecureSkipVerify: true}
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(smtpTimeout))
	if implicit {
		tconn := tls.Client(conn, tc)
		if err := tconn.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		c := smtp.NewClient(tconn)
		if err := c.Hello("test.client"); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := smtp.NewClientStartTLS(conn, tc)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// smtpAuth tries AUTH PLAIN and says how it went.
func smtpAuth(addr string, implicit bool, user, pass string) error {
	c, err := dialSMTP(addr, implicit)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		return err
	}
	return c.Quit()
}

// submit sends one message; accepted runs the moment the 250 for DATA has
// arrived (before QUIT), so a caller can act on the promise at once.
func submit(addr, user, pass string, m sentMsg, accepted func()) error {
	c, err := dialSMTP(addr, false)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		return err
	}
	if err := c.SendMail(user, []string{m.to}, bytes.NewReader(m.raw)); err != nil {
		return err
	}
	if accepted != nil {
		accepted()
	}
	c.Quit() // the server may already be gone: the 250 is what counts
	return nil
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// sentMsg is one submitted message and what reading it must show.
type sentMsg struct {
	to, subject, text string
	attName           string
	att               []byte
	canary            string // unique string in subject and body
	raw               []byte
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newMsg builds a multipart message with a text part and one attachment.
func newMsg(from, to, label string) sentMsg {
	canary := "CANARY" + randHex(8)
	m := sentMsg{
		to:      to,
		subject: "Lab results " + label + " " + canary,
		text:    "Dear patient,\r\nyour results for " + label + " are attached.\r\nReference " + canary + ".",
		attName: "results-" + label + ".bin",
		att:     []byte("attachment " + canary + " " + randHex(700)),
		canary:  canary,
	}
	boundary := "b" + randHex(12)
	var b strings.Builder
	fmt.Fprintf(&b, "From: Dr Lee <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@test.example>\r\n",
		from, to, m.subject, time.Now().Format(time.RFC1123Z), randHex(12))
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=%q\r\n\r\n", boundary)
	// The CRLF before a boundary belongs to the boundary (RFC 2046 5.1.1),
	// so the part's text is m.text without it.
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n%s\r\n", boundary, m.text)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=%q\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\n", boundary, m.attName)
	enc := base64.StdEncoding.EncodeToString(m.att)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	m.raw = []byte(b.String())
	return m
}

// ---------------------------------------------------------------------------
// Maildrop notices

type notice struct {
	file, to, token string
	raw             []byte
}

var claimRe = regexp.MustCompile(`/claim/([A-Za-z0-9_-]{20,})`)

// readNotices parses every notice in DIR/maildrop (files appear by rename, so
// none is half written).
func readNotices(t *testing.T, dir string) []notice {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "maildrop", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out []notice
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("notice %s: %v\n%s", f, err, raw)
		}
		to, err := mail.ParseAddress(msg.Header.Get("To"))
		if err != nil {
			t.Fatalf("notice %s: To: %v", f, err)
		}
		n := notice{file: f, to: strings.ToLower(to.Address), raw: raw}
		// Undo quoted-printable soft line breaks before looking for the link.
		flat := strings.NewReplacer("=\r\n", "", "=\n", "").Replace(string(raw))
		if m := claimRe.FindStringSubmatch(flat); m != nil {
			n.token = m[1]
		}
		out = append(out, n)
	}
	return out
}

func byRecipient(ns []notice) map[string][]notice {
	m := map[string][]notice{}
	for _, n := range ns {
		m[n.to] = append(m[n.to], n)
	}
	return m
}

// waitNotices polls the maildrop until every address in want has at least
// min notices, or fails after noticeTimeout.
func waitNotices(t *testing.T, p *proc, dir string, want []string, min int) map[string][]notice {
	t.Helper()
	deadline := time.Now().Add(noticeTimeout)
	for {
		got := byRecipient(readNotices(t, dir))
		var missing []string
		for _, w := range want {
			if len(got[w]) < min {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			return got
		}
		if p.exited() {
			t.Fatalf("phigate exited (%v) while waiting for notices\n%s", p.waitErr, p.tail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s still no notice (want %d each) for %d of %d recipients: %v\n%s",
				noticeTimeout, min, len(missing), len(want), missing, p.tail())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Portal API client

type apiClient struct {
	t    *testing.T
	p    *proc // for the server's log in failure messages
	base string
	hc   *http.Client
}

func newAPI(t *testing.T, p *proc) *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: t, p: p, base: "https://" + p.HTTPS, hc: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

func (c *apiClient) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", method, path, err, c.p.tail())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// call does a request, requires status want and decodes the answer into out.
func (c *apiClient) call(method, path string, body any, want int, out any) {
	c.t.Helper()
	st, b := c.do(method, path, body)
	if st != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s\n%s", method, path, st, want, b, c.p.tail())
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type apiList struct {
	Messages []struct {
		ID        string `json:"id"`
		Subject   string `json:"subject"`
		Signature string `json:"signature"`
	} `json:"messages"`
}

type apiMessage struct {
	ID      string `json:"id"`
	Headers struct {
		Subject string `json:"subject"`
	} `json:"headers"`
	Text        string `json:"text"`
	Signature   string `json:"signature"`
	Attachments []struct {
		ID          string `json:"id"`
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		Size        int64  `json:"size"`
	} `json:"attachments"`
	Problems []string `json:"problems"`
}

func (c *apiClient) list() apiList {
	c.t.Helper()
	var l apiList
	c.call("GET", "/api/v1/messages", nil, http.StatusOK, &l)
	return l
}

// checkMessage reads message id and requires it to be exactly m: text,
// subject, a verified signature and the attachment byte for byte.
func (c *apiClient) checkMessage(id string, m sentMsg) {
	c.t.Helper()
	var got apiMessage
	c.call("GET", "/api/v1/messages/"+id, nil, http.StatusOK, &got)
	norm := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	if norm(got.Text) != norm(m.text) {
		c.t.Errorf("message %s to %s: text %q, want %q", id, m.to, got.Text, m.text)
	}
	if got.Headers.Subject != m.subject {
		c.t.Errorf("message %s to %s: subject %q, want %q", id, m.to, got.Headers.Subject, m.subject)
	}
	if got.Signature != "verified" {
		c.t.Errorf("message %s to %s: signature %q, want \"verified\" (problems %v)", id, m.to, got.Signature, got.Problems)
	}
	if len(got.Attachments) != 1 {
		c.t.Errorf("message %s to %s: %d attachments, want 1", id, m.to, len(got.Attachments))
		return
	}
	a := got.Attachments[0]
	if a.Filename != m.attName || a.Size != int64(len(m.att)) {
		c.t.Errorf("message %s to %s: attachment %q size %d, want %q size %d", id, m.to, a.Filename, a.Size, m.attName, len(m.att))
	}
	st, body := c.do("GET", "/api/v1/messages/"+id+"/attachments/"+a.ID, nil)
	if st != http.StatusOK || !bytes.Equal(body, m.att) {
		c.t.Errorf("message %s to %s: attachment download status %d, %d bytes; want 200 and the %d bytes sent",
			id, m.to, st, len(body), len(m.att))
	}
}

// claimAndCheck claims m's recipient account with token and requires the
// inbox to hold exactly m.
func claimAndCheck(t *testing.T, p *proc, token, password string, m sentMsg) *apiClient {
	t.Helper()
	c := newAPI(t, p)
	c.call("POST", "/api/v1/claim", map[string]string{"token": token, "password": password}, http.StatusOK, nil)
	l := c.list()
	if len(l.Messages) != 1 {
		t.Fatalf("recipient %s: inbox has %d messages after restart, want exactly 1: %+v", m.to, len(l.Messages), l.Messages)
	}
	if sig := l.Messages[0].Signature; sig != "verified" {
		t.Errorf("recipient %s: inbox lists signature %q, want \"verified\"", m.to, sig)
	}
	c.checkMessage(l.Messages[0].ID, m)
	return c
}

// assertNoticesPHIFree requires notices to carry nothing of the messages:
// no subject or body canary, no sender name or address (DESIGN.md: a notice
// carries no PHI at all).
func assertNoticesPHIFree(t *testing.T, got map[string][]notice, msgs []sentMsg) {
	t.Helper()
	for _, ns := range got {
		for _, n := range ns {
			for _, needle := range []string{"Dr Lee", staffEmail} {
				if bytes.Contains(n.raw, []byte(needle)) {
					t.Errorf("notice %s contains %q", n.file, needle)
				}
			}
			for _, m := range msgs {
				if bytes.Contains(n.raw, []byte(m.canary)) {
					t.Errorf("notice %s contains the message canary %s", n.file, m.canary)
				}
			}
		}
	}
}

// assertCleanLog requires a server's log to hold no ERROR record: recovery
// after a kill is routine and must not need one.
func assertCleanLog(t *testing.T, p *proc) {
	t.Helper()
	for _, line := range strings.Split(p.stderr(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("server logged an error: %s", line)
		}
	}
}

// assertNoPHIInLogs searches the server's stderr for message canaries and
// recipient addresses (DESIGN.md invariant 1).
func assertNoPHIInLogs(t *testing.T, msgs []sentMsg, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		s := p.stderr()
		for _, m := range msgs {
			for _, needle := range []string{m.canary, m.to} {
				if strings.Contains(s, needle) {
					t.Errorf("server log %s contains PHI %q", p.stderrPath, needle)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// 1. A 250 survives SIGKILL

// burstResult is what a concurrent burst of submissions saw.
type burstResult struct {
	accepted []bool  // index i got its 250
	errs     []error // index i failed (only meaningful before the kill)
	order    []int   // indexes in the order their 250s arrived
}

// burst submits msgs over `workers` connections at once. When the
// killAfter-th 250 arrives it SIGKILLs the server from that same goroutine,
// so the kill follows the 250 by microseconds. Errors seen before the kill
// fail the test; errors after it are expected.
func burst(t *testing.T, p *proc, secret string, msgs []sentMsg, workers, killAfter int) burstResult {
	t.Helper()
	res := burstResult{accepted: make([]bool, len(msgs)), errs: make([]error, len(msgs))}
	var (
		mu       sync.Mutex
		count    int
		killed   atomic.Bool
		killOnce sync.Once
		killErr  error
		wg       sync.WaitGroup
	)
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if killed.Load() {
					continue
				}
				err := submit(p.SMTP, staffEmail, secret, msgs[i], func() {
					mu.Lock()
					res.accepted[i] = true
					res.order = append(res.order, i)
					count++
					kill := count == killAfter
					mu.Unlock()
					if kill {
						killOnce.Do(func() {
							killed.Store(true)
							killErr = p.kill9()
						})
					}
				})
				if err != nil && !killed.Load() {
					mu.Lock()
					res.errs[i] = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range msgs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if killErr != nil {
		t.Fatalf("SIGKILL: %v", killErr)
	}
	if !killed.Load() {
		var errs []string
		for i, e := range res.errs {
			if e != nil {
				errs = append(errs, fmt.Sprintf("%d: %v", i, e))
			}
		}
		t.Fatalf("only %d of %d messages got a 250, kill was due after %d; errors: %v\n%s",
			count, len(msgs), killAfter, errs, p.tail())
	}
	for i, e := range res.errs {
		if e != nil {
			t.Errorf("message %d refused while the server was up: %v (code %d)", i, e, smtpCode(e))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	p.assertKilled()
	return res
}

// TestKill9AfterAcceptLosesNothing: every message that got a 250, and its
// notice, survive a SIGKILL sent right after the last 250. Notices still in
// the outbox at the kill go out after the restart.
func TestKill9AfterAcceptLosesNothing(t *testing.T) {
	const n, workers = 20, 4
	dir := t.TempDir()
	p := startDev(t, dir)
	secret := addStaff(t, dir, staffEmail, "laptop")

	msgs := make([]sentMsg, n)
	rcpts := make([]string, n)
	for i := range msgs {
		rcpts[i] = fmt.Sprintf("p%d@example.net", i)
		msgs[i] = newMsg(staffEmail, rcpts[i], fmt.Sprint(i))
	}
	res := burst(t, p, secret, msgs, workers, n)
	for i, ok := range res.accepted {
		if !ok {
			t.Fatalf("message %d got no 250", i)
		}
	}
	before := byRecipient(readNotices(t, dir))
	t.Logf("at SIGKILL %d of %d recipients had their notice; the rest were still in the outbox", len(before), n)

	p2 := startDev(t, dir)
	got := waitNotices(t, p2, dir, rcpts, 1)
	checkNotices(t, got, rcpts)
	assertNoticesPHIFree(t, got, msgs)

	for i, m := range msgs {
		claimAndCheck(t, p2, got[m.to][0].token, fmt.Sprintf("harbor violet canyon %d", i), m)
	}
	assertNoPHIInLogs(t, msgs, p, p2)
	assertCleanLog(t, p2)
}

// checkNotices requires notices only for expected recipients, each with a
// claim link, and logs (allowed, at-least-once) duplicates.
func checkNotices(t *testing.T, got map[string][]notice, rcpts []string) {
	t.Helper()
	known := map[string]bool{}
	for _, r := range rcpts {
		known[r] = true
	}
	for to, ns := range got {
		if !known[to] {
			t.Errorf("notice for unexpected recipient %s (%s)", to, ns[0].file)
		}
		for _, x := range ns {
			if x.token == "" {
				t.Errorf("notice %s to %s has no claim link:\n%s", x.file, to, x.raw)
			}
		}
		if len(ns) > 1 {
			t.Logf("recipient %s got %d notices (at-least-once delivery across the kill)", to, len(ns))
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// TestKill9DuringBurstKeepsAccepted: SIGKILL in the middle of a burst (after
// the 10th of 40 250s, with other transactions in flight). Every message
// that got a 250 is readable after restart, exactly once; messages that did
// not get one may or may not exist, but whatever exists is whole.
func TestKill9DuringBurstKeepsAccepted(t *testing.T) {
	const n, workers, killAfter = 40, 4, 10
	dir := t.TempDir()
	p := startDev(t, dir)
	secret := addStaff(t, dir, staffEmail, "laptop")

	msgs := make([]sentMsg, n)
	byAddr := map[string]int{}
	var all []string
	for i := range msgs {
		to := fmt.Sprintf("burst%d@example.net", i)
		msgs[i] = newMsg(staffEmail, to, fmt.Sprint(i))
		byAddr[to] = i
		all = append(all, to)
	}
	res := burst(t, p, secret, msgs, workers, killAfter)
	var accepted []string
	for i, ok := range res.accepted {
		if ok {
			accepted = append(accepted, msgs[i].to)
		}
	}
	if len(accepted) < killAfter {
		t.Fatalf("%d accepted, want at least %d", len(accepted), killAfter)
	}

	p2 := startDev(t, dir)
	got := waitNotices(t, p2, dir, accepted, 1)
	// Give messages committed without a 250 (in flight at the kill) the same
	// chance to show their notice: the dispatcher drains the whole outbox at
	// start, so one more short poll for a quiet maildrop suffices.
	got = waitQuiet(t, dir, got)
	checkNotices(t, got, all)
	assertNoticesPHIFree(t, got, msgs)

	extra := 0
	for to, ns := range got {
		i := byAddr[to]
		if !res.accepted[i] {
			extra++
		}
		claimAndCheck(t, p2, ns[0].token, fmt.Sprintf("harbor violet canyon %d", i), msgs[i])
	}
	t.Logf("%d accepted before SIGKILL, all readable after restart; %d more were committed without their 250 reaching the client",
		len(accepted), extra)
	assertNoPHIInLogs(t, msgs, p, p2)
	assertCleanLog(t, p2)
}

// waitQuiet re-reads the maildrop until it stops growing for a moment
// (bounded), and returns the last view.
func waitQuiet(t *testing.T, dir string, got map[string][]notice) map[string][]notice {
	t.Helper()
	count := func(m map[string][]notice) (c int) {
		for _, v := range m {
			c += len(v)
		}
		return c
	}
	deadline := time.Now().Add(3 * time.Second)
	last, stable := count(got), 0
	for time.Now().Before(deadline) && stable < 10 {
		time.Sleep(50 * time.Millisecond)
		got = byRecipient(readNotices(t, dir))
		if c := count(got); c == last {
			stable++
		} else {
			last, stable = c, 0
		}
	}
	return got
}

// ---------------------------------------------------------------------------
// 2. Graceful restart

// TestRestartKeepsMessages: after a graceful SIGTERM (exit 0) and restart,
// the claimed recipient signs in with the password chosen at claim time and
// reads the same message; the claim link stays spent; old sessions are gone
// (they live in memory); the staff app password and portal password still
// work; a new message to the now active account is readable with their key.
func TestRestartKeepsMessages(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	secret := addStaff(t, dir, staffEmail, "laptop")
	const patient, patientPw = "pat.jones@example.net", "correct horse battery"

	m1 := newMsg(staffEmail, patient, "first")
	if err := submit(p.SMTP, staffEmail, secret, m1, nil); err != nil {
		t.Fatalf("send: %v\n%s", err, p.tail())
	}
	token := waitNotices(t, p, dir, []string{patient}, 1)[patient][0].token
	old := claimAndCheck(t, p, token, patientPw, m1)

	p.stop()

	p2 := startDev(t, dir)
	old.base, old.p = "https://"+p2.HTTPS, p2 // cookies are not bound to a port
	if st, b := old.do("GET", "/api/v1/messages", nil); st != http.StatusUnauthorized {
		t.Errorf("session from before the restart: status %d, want 401: %s", st, b)
	}
	c := newAPI(t, p2)
	if st, b := c.do("POST", "/api/v1/claim", map[string]string{"token": token, "password": "copper lantern drift 5"}); st != http.StatusGone {
		t.Errorf("reusing the claim link after restart: status %d, want 410: %s", st, b)
	}
	if st, _ := c.do("POST", "/api/v1/login", map[string]string{"email": patient, "password": "wrong password 123"}); st != http.StatusUnauthorized {
		t.Errorf("login with a wrong password: status %d, want 401", st)
	}
	c.call("POST", "/api/v1/login", map[string]string{"email": patient, "password": patientPw}, http.StatusOK, nil)
	l := c.list()
	if len(l.Messages) != 1 {
		t.Fatalf("inbox after restart: %d messages, want 1", len(l.Messages))
	}
	c.checkMessage(l.Messages[0].ID, m1)

	staff := newAPI(t, p2)
	staff.call("POST", "/api/v1/login", map[string]string{"email": staffEmail, "password": staffPassword}, http.StatusOK, nil)

	// The app password survives the restart; the recipient is active now, so
	// the next notice links to sign-in, not to a claim.
	m2 := newMsg(staffEmail, patient, "second")
	if err := submit(p2.SMTP, staffEmail, secret, m2, nil); err != nil {
		t.Fatalf("send after restart: %v\n%s", err, p2.tail())
	}
	ns := waitNotices(t, p2, dir, []string{patient}, 2)[patient]
	if len(ns) != 2 {
		t.Fatalf("%d notices for %s, want 2", len(ns), patient)
	}
	last := ns[len(ns)-1]
	if last.token != "" || !strings.Contains(string(last.raw), "/login") {
		t.Errorf("notice to an active account should link to /login, not a claim:\n%s", last.raw)
	}
	l = c.list()
	if len(l.Messages) != 2 {
		t.Fatalf("inbox: %d messages, want 2", len(l.Messages))
	}
	seen := 0
	for _, it := range l.Messages {
		var got apiMessage
		c.call("GET", "/api/v1/messages/"+it.ID, nil, http.StatusOK, &got)
		switch got.Headers.Subject {
		case m1.subject:
			c.checkMessage(it.ID, m1)
			seen |= 1
		case m2.subject:
			c.checkMessage(it.ID, m2)
			seen |= 2
		default:
			t.Errorf("unexpected message %s: subject %q", it.ID, got.Headers.Subject)
		}
	}
	if seen != 3 {
		t.Errorf("inbox did not show both messages (seen mask %b)", seen)
	}
	p2.stop()
	assertNoPHIInLogs(t, []sentMsg{m1, m2}, p, p2)
	assertCleanLog(t, p)
	assertCleanLog(t, p2)
}

// ---------------------------------------------------------------------------
// 3. Production mode refuses unsafe settings

// prodSetup is a production configuration whose parts the cases break.
type prodSetup struct {
	dataDir, certFile, keyFile, masterFile, escrowPub, escrowPriv, smarthost string
	noTLS                                                                    bool
}

func (s prodSetup) toml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\ndata_dir = %q\nsmtp_addr = \"127.0.0.1:0\"\nsmtps_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\npublic_url = \"https://portal.clinic.example\"\n\n", s.dataDir)
	if !s.noTLS {
		fmt.Fprintf(&b, "[tls]\ncert_file = %q\nkey_file = %q\n\n", s.certFile, s.keyFile)
	}
	fmt.Fprintf(&b, "[keys]\nmaster_key_file = %q\nescrow_public_key_file = %q\n", s.masterFile, s.escrowPub)
	if s.escrowPriv != "" {
		fmt.Fprintf(&b, "escrow_private_key_file = %q\n", s.escrowPriv)
	}
	b.WriteString("\n")
	if s.smarthost != "" {
		fmt.Fprintf(&b, "[smarthost]\naddr = %q\n\n", s.smarthost)
	}
	b.WriteString("[metrics]\naddr = \"127.0.0.1:0\"\n\n")
	b.WriteString("[security]\nofficer_email = \"officer@clinic.example\"\n\n")
	b.WriteString("[log]\nlevel = \"info\"\n")
	return b.String()
}

func writeFile(t *testing.T, path string, b []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // umask-proof
		t.Fatal(err)
	}
}

// selfSignedPEM makes a certificate and key for 127.0.0.1 / localhost.
func selfSignedPEM(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// prodKeys is key material shared by the cases (key generation is the
// slow part).
type prodKeys struct {
	certPEM, keyPEM                             []byte
	escrowPub, escrowArmoredPriv, escrowBinPriv []byte
}

func newProdKeys(t *testing.T) prodKeys {
	t.Helper()
	var k prodKeys
	k.certPEM, k.keyPEM = selfSignedPEM(t)
	esc, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "x", Email: "x@x"})
	if err != nil {
		t.Fatal(err)
	}
	if k.escrowPub, err = esc.PublicArmored(); err != nil {
		t.Fatal(err)
	}
	if k.escrowArmoredPriv, err = pcrypto.LockArmored(esc, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if k.escrowBinPriv, err = esc.PrivateBytes(); err != nil {
		t.Fatal(err)
	}
	return k
}

// validProd writes a complete, valid production setup into a new folder.
func validProd(t *testing.T, k prodKeys) prodSetup {
	t.Helper()
	d := t.TempDir()
	s := prodSetup{
		dataDir:    filepath.Join(d, "data"),
		certFile:   filepath.Join(d, "cert.pem"),
		keyFile:    filepath.Join(d, "key.pem"),
		masterFile: filepath.Join(d, "master.key"),
		escrowPub:  filepath.Join(d, "escrow-public.asc"),
		smarthost:  "127.0.0.1:1",
	}
	writeFile(t, s.certFile, k.certPEM, 0o644)
	writeFile(t, s.keyFile, k.keyPEM, 0o600)
	master := make([]byte, 32)
	rand.Read(master)
	writeFile(t, s.masterFile, []byte(base64.StdEncoding.EncodeToString(master)+"\n"), 0o600)
	writeFile(t, s.escrowPub, k.escrowPub, 0o644)
	return s
}

// runServeBounded runs `phigate serve args...` until it exits, or until it
// prints its banner (then it is stopped with SIGTERM and started=true).
func runServeBounded(t *testing.T, env []string, args ...string) (p *proc, started bool) {
	t.Helper()
	p = startProc(t, env, append([]string{"serve"}, args...)...)
	deadline := time.Now().Add(bannerTimeout)
	for {
		if p.exited() {
			return p, strings.Contains(p.stdout.String(), "phigate is running")
		}
		if strings.Contains(p.stdout.String(), "HTTPS portal:") {
			p.stop()
			return p, true
		}
		if time.Now().After(deadline) {
			t.Fatalf("phigate serve neither exited nor started within %s\nstdout:\n%s\n%s", bannerTimeout, p.stdout.String(), p.tail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProductionRefusesUnsafe: `serve --config` refuses to start (exit 1,
// stderr names the setting) for each unsafe setting, and does start when
// nothing is unsafe, so the refusals are not failures for some other reason.
func TestProductionRefusesUnsafe(t *testing.T) {
	keys := newProdKeys(t)
	type tc struct {
		name      string
		mutate    func(t *testing.T, s *prodSetup)
		env       []string
		args      []string // replaces --config FILE when set
		wantCode  int
		wantStart bool
		want      []string
		wantNot   []string
	}
	cases := []tc{
		{name: "valid config starts", wantCode: 0, wantStart: true,
			wantNot: []string{"refusing"}},
		{name: "smarthost from environment, valid config starts",
			mutate: func(t *testing.T, s *prodSetup) { s.smarthost = "" },
			env:    []string{"PHIGATE_SMARTHOST_ADDR=127.0.0.1:1"}, wantCode: 0, wantStart: true,
			wantNot: []string{"smarthost.addr", "refusing"}},
		{name: "no tls certificate",
			mutate:   func(t *testing.T, s *prodSetup) { s.noTLS = true },
			wantCode: 1, want: []string{"refusing to start", "tls.cert_file"}, wantNot: []string{"smarthost.addr", "escrow"}},
		{name: "tls certificate file missing",
			mutate:   func(t *testing.T, s *prodSetup) { s.certFile += ".missing" },
			wantCode: 1, want: []string{"refusing to start", "does not exist"}},
		{name: "no smarthost",
			mutate:   func(t *testing.T, s *prodSetup) { s.smarthost = "" },
			wantCode: 1, want: []string{"refusing to start", "smarthost.addr"}, wantNot: []string{"tls.cert_file", "escrow"}},
		{name: "escrow private key file set",
			mutate: func(t *testing.T, s *prodSetup) {
				s.escrowPriv = filepath.Join(filepath.Dir(s.escrowPub), "escrow-private.asc")
				writeFile(t, s.escrowPriv, keys.escrowArmoredPriv, 0o600)
			},
			wantCode: 1, want: []string{"refusing to start", "keys.escrow_private_key_file"}, wantNot: []string{"tls.cert_file", "smarthost.addr"}},
		{name: "escrow public key file holds an armored private key",
			mutate:   func(t *testing.T, s *prodSetup) { writeFile(t, s.escrowPub, keys.escrowArmoredPriv, 0o600) },
			wantCode: 1, want: []string{"escrow_public_key_file", "private key"}, wantNot: []string{"tls.cert_file", "smarthost.addr"}},
		{name: "escrow public key file holds a binary private key",
			mutate:   func(t *testing.T, s *prodSetup) { writeFile(t, s.escrowPub, keys.escrowBinPriv, 0o600) },
			wantCode: 1, want: []string{"escrow_public_key_file", "private key"}},
		{name: "environment override applies without smarthost in the file",
			mutate: func(t *testing.T, s *prodSetup) { s.smarthost, s.noTLS = "", true },
			env:    []string{"PHIGATE_SMARTHOST_ADDR=127.0.0.1:1"},
			// Still refused for the missing certificate, but no longer for the smarthost.
			wantCode: 1, want: []string{"tls.cert_file"}, wantNot: []string{"smarthost.addr"}},
		{name: "environment overrides the file",
			env:      []string{"PHIGATE_KEYS_ESCROW_PRIVATE_KEY_FILE=/nonexistent/escrow-private.asc"},
			wantCode: 1, want: []string{"keys.escrow_private_key_file"}},
		{name: "every unsafe setting is named at once",
			mutate: func(t *testing.T, s *prodSetup) {
				s.noTLS, s.smarthost, s.escrowPriv = true, "", "/nonexistent/escrow-private.asc"
			},
			wantCode: 1, want: []string{"tls.cert_file", "smarthost.addr", "keys.escrow_private_key_file"}},
		{name: "master key file readable by others",
			mutate:   func(t *testing.T, s *prodSetup) { os.Chmod(s.masterFile, 0o644) },
			wantCode: 1, want: []string{"keys.master_key_file", "permissions"}},
		{name: "unknown environment setting",
			env:      []string{"PHIGATE_SERVER_NO_SUCH_THING=1"},
			wantCode: 1, want: []string{"PHIGATE_SERVER_NO_SUCH_THING"}},
		{name: "neither --dev nor --config", args: []string{},
			wantCode: 2, want: []string{"--config", "--dev"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := validProd(t, keys)
			if c.mutate != nil {
				c.mutate(t, &s)
			}
			cfgFile := filepath.Join(t.TempDir(), "phigate.toml")
			writeFile(t, cfgFile, []byte(s.toml()), 0o600)
			args := []string{"--config", cfgFile}
			if c.args != nil {
				args = c.args
			}
			p, started := runServeBounded(t, childEnv(c.env...), args...)
			stderr := p.stderr()
			if started != c.wantStart {
				t.Errorf("started=%v, want %v\nconfig:\n%s\nstdout:\n%s\n%s", started, c.wantStart, s.toml(), p.stdout.String(), p.tail())
			}
			if c.wantStart {
				if !strings.Contains(p.stdout.String(), "phigate is running, production") {
					t.Errorf("banner does not say production mode:\n%s", p.stdout.String())
				}
			} else if code := p.exitCode(); code != c.wantCode {
				t.Errorf("exit code %d, want %d\n%s", code, c.wantCode, p.tail())
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q\n%s", w, p.tail())
				}
			}
			for _, w := range c.wantNot {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr mentions %q but should not\n%s", w, p.tail())
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 4. Admin CLI against a running server

// TestCLIUserAndAppPassword: `user add` validates (address, 12-character
// minimum, role, duplicates) with exit 1 and a message; an app password from
// the CLI works at once for SMTP AUTH on both ports of the running server,
// only for its own account; `--revoke` makes it fail with 535 at once; the
// portal password never works for SMTP AUTH.
func TestCLIUserAndAppPassword(t *testing.T) {
	dir := t.TempDir()
	p := startDev(t, dir)
	add := func(email, role, pw string) cliResult {
		return runCLI(t, pw+"\n", "user", "add", "--data", dir, "--email", email, "--role", role, "--password-stdin")
	}
	expectFail := func(what string, r cliResult, code int, want string) {
		t.Helper()
		if r.code != code || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and a message containing %q", what, r.code, r.stderr, code, want)
		}
	}

	expectFail("bad email", add("not-an-email", "staff", staffPassword), 1, "not a valid email address")
	expectFail("short password", add(staffEmail, "staff", "short pw"), 1, "at least 12 characters")
	expectFail("unknown role", add(staffEmail, "superuser", staffPassword), 1, "unknown role")
	if r := add(staffEmail, "staff", staffPassword); r.code != 0 || !strings.Contains(r.stdout, "created staff account") {
		t.Fatalf("user add: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	expectFail("duplicate", add(staffEmail, "staff", "copper lantern drift 5"), 1, "already exists")
	expectFail("duplicate, other case", add(strings.ToUpper(staffEmail), "staff", "copper lantern drift 5"), 1, "already exists")
	expectFail("missing --password-stdin",
		runCLI(t, "", "user", "add", "--data", dir, "--email", "x@clinic.example"), 2, "--password-stdin")

	const other = "dr.kim@clinic.example"
	if r := add(other, "staff", staffPassword); r.code != 0 {
		t.Fatalf("user add %s: exit %d: %s", other, r.code, r.stderr)
	}

	secret := appPassword(t, dir, staffEmail, "laptop")
	expectFail("duplicate app password name",
		runCLI(t, "", "user", "app-password", "--data", dir, "--email", staffEmail, "--name", "laptop"), 1, "already exists")
	expectFail("app password for unknown account",
		runCLI(t, "", "user", "app-password", "--data", dir, "--email", "nobody@clinic.example", "--name", "laptop"), 1, "no account")

	for _, implicit := range []bool{false, true} {
		addr := p.SMTP
		if implicit {
			addr = p.SMTPS
		}
		if err := smtpAuth(addr, implicit, staffEmail, secret); err != nil {
			t.Errorf("AUTH with the new app password (implicit TLS %v): %v\n%s", implicit, err, p.tail())
		}
	}
	m := newMsg(staffEmail, "cli.patient@example.net", "cli")
	if err := submit(p.SMTP, staffEmail, secret, m, nil); err != nil {
		t.Errorf("send with the app password: %v\n%s", err, p.tail())
	}
	if err := smtpAuth(p.SMTP, false, other, secret); smtpCode(err) != 535 {
		t.Errorf("AUTH as %s with %s's app password: %v, want 535", other, staffEmail, err)
	}
	for _, implicit := range []bool{false, true} {
		addr := p.SMTP
		if implicit {
			addr = p.SMTPS
		}
		if err := smtpAuth(addr, implicit, staffEmail, staffPassword); smtpCode(err) != 535 {
			t.Errorf("AUTH with the portal password (implicit TLS %v): %v, want 535", implicit, err)
		}
	}

	r := runCLI(t, "", "user", "app-password", "--data", dir, "--email", staffEmail, "--revoke", "laptop")
	if r.code != 0 {
		t.Fatalf("--revoke laptop: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, implicit := range []bool{false, true} {
		addr := p.SMTP
		if implicit {
			addr = p.SMTPS
		}
		if err := smtpAuth(addr, implicit, staffEmail, secret); smtpCode(err) != 535 {
			t.Errorf("AUTH with the revoked app password (implicit TLS %v): %v, want 535", implicit, err)
		}
	}
	expectFail("revoke twice",
		runCLI(t, "", "user", "app-password", "--data", dir, "--email", staffEmail, "--revoke", "laptop"), 1, "no active app password")

	// The name is free again after revocation, and the new secret works.
	secret2 := appPassword(t, dir, staffEmail, "laptop")
	if secret2 == secret {
		t.Errorf("a new app password repeated the revoked secret")
	}
	if err := smtpAuth(p.SMTP, false, staffEmail, secret2); err != nil {
		t.Errorf("AUTH with a fresh app password after revocation: %v", err)
	}
	if p.exited() {
		t.Fatalf("server exited during the CLI test\n%s", p.tail())
	}
}

// ---------------------------------------------------------------------------
// 5. Listeners

// TestMetricsFlagTwoGateways: `serve --metrics ADDR` sets the metrics
// listener, so two gateways run side by side on one host (as the suite does
// beside a developer's gateway); each serves its own /metrics at the address
// its banner names, and neither took the default port.
func TestMetricsFlagTwoGateways(t *testing.T) {
	a, b := startDev(t, t.TempDir()), startDev(t, t.TempDir())
	if a.Metrics == b.Metrics {
		t.Fatalf("both gateways report metrics at %s", a.Metrics)
	}
	for _, p := range []*proc{a, b} {
		if _, port, _ := net.SplitHostPort(p.Metrics); port == "9464" || port == "0" {
			t.Errorf("metrics listener at %s, want the port bound for 127.0.0.1:0", p.Metrics)
		}
		res, err := http.Get("http://" + p.Metrics + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v\n%s", err, p.tail())
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("phigate_smtp_accepted_total")) {
			t.Errorf("GET http://%s/metrics: %d\n%.300s", p.Metrics, res.StatusCode, body)
		}
	}
	a.stop()
	b.stop()
}
