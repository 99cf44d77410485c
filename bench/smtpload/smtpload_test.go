package main

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
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	testUser = "dr.lee@clinic.example"
	testPass = "correct horse battery staple"
)

type received struct {
	from  string
	rcpts []string
	body  []byte
}

// testBackend accepts everything from authenticated sessions and records
// each DATA body. If rejectEvery > 0, every rejectEvery-th DATA gets a 554.
type testBackend struct {
	rejectEvery int
	dataDelay   time.Duration
	noAuth      bool // accept MAIL without AUTH, as an MTA relaying for loopback

	mu       sync.Mutex
	auths    int
	sessions int
	rsets    int
	data     int
	msgs     []received
}

func (b *testBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	b.sessions++
	b.mu.Unlock()
	return &testSession{be: b}, nil
}

type testSession struct {
	be     *testBackend
	authed bool
	from   string
	rcpts  []string
}

func (s *testSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *testSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != testUser || password != testPass {
			return smtp.ErrAuthFailed
		}
		s.authed = true
		s.be.mu.Lock()
		s.be.auths++
		s.be.mu.Unlock()
		return nil
	}), nil
}

func (s *testSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed && !s.be.noAuth {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *testSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.be.dataDelay > 0 {
		time.Sleep(s.be.dataDelay)
	}
	s.be.mu.Lock()
	defer s.be.mu.Unlock()
	s.be.data++
	if s.be.rejectEvery > 0 && s.be.data%s.be.rejectEvery == 0 {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message rejected by test policy"}
	}
	s.be.msgs = append(s.be.msgs, received{from: s.from, rcpts: append([]string(nil), s.rcpts...), body: body})
	return nil
}

func (s *testSession) Reset() {
	s.from, s.rcpts = "", nil
	s.be.mu.Lock()
	s.be.rsets++
	s.be.mu.Unlock()
}

func (s *testSession) Logout() error { return nil }

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// startServer runs an in-process go-smtp server on 127.0.0.1:0 and returns
// its address. With implicit, the listener itself is TLS.
func startServer(t *testing.T, be *testBackend, implicit bool) string {
	t.Helper()
	tlsCfg := selfSignedTLS(t)
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.TLSConfig = tlsCfg
	s.ReadTimeout = 30 * time.Second
	s.WriteTimeout = 30 * time.Second
	s.MaxMessageBytes = 10 << 20
	s.MaxRecipients = 100
	s.ErrorLog = log.New(io.Discard, "", 0)

	var ln net.Listener
	var err error
	if implicit {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return ln.Addr().String()
}

func testConfig(addr string) Config {
	cfg := DefaultConfig()
	cfg.Addr = addr
	cfg.User = testUser
	cfg.Pass = testPass
	cfg.Conns = 4
	cfg.N = 40
	cfg.Timeout = 10 * time.Second
	cfg.RetryBackoff = 10 * time.Millisecond
	return cfg
}

func runT(t *testing.T, cfg Config) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := run(ctx, cfg)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res
}

// checkMIME parses a received body and checks the multipart structure.
func checkMIME(t *testing.T, body []byte) (msgID string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	for _, h := range []string{"From", "To", "Subject", "Date", "Message-Id"} {
		if m.Header.Get(h) == "" {
			t.Errorf("missing header %s", h)
		}
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("bad Date: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])

	p, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	mt, aparams, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
	if mt != "multipart/alternative" {
		t.Fatalf("first part %q, want multipart/alternative", mt)
	}
	ar := multipart.NewReader(p, aparams["boundary"])
	var types []string
	for {
		ap, err := ar.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(ap)
		ct, _, _ := mime.ParseMediaType(ap.Header.Get("Content-Type"))
		types = append(types, ct)
		if ct == "text/plain" {
			for _, line := range strings.Split(string(b), "\r\n") {
				if len(line) > 78 {
					t.Fatalf("text/plain line longer than 78: %q", line)
				}
			}
		}
	}
	if strings.Join(types, ",") != "text/plain,text/html" {
		t.Fatalf("alternative parts %v", types)
	}

	p, err = mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if p.FileName() == "" || p.Header.Get("Content-Transfer-Encoding") != "base64" {
		t.Fatalf("attachment headers %v", p.Header)
	}
	raw, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
	if err != nil || !bytes.HasPrefix(raw, []byte("%PDF-")) {
		t.Fatalf("attachment decode: %v (prefix %q)", err, raw[:min(len(raw), 8)])
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("expected end of multipart/mixed, got %v", err)
	}
	return m.Header.Get("Message-Id")
}

func TestRunSTARTTLS(t *testing.T) {
	be := &testBackend{}
	addr := startServer(t, be, false)
	cfg := testConfig(addr)
	res := runT(t, cfg)

	if res.OK != 40 || res.Failed != 0 {
		t.Fatalf("ok=%d failed=%d failures=%v connErrs=%v", res.OK, res.Failed, res.Failures, res.ConnErrorKinds)
	}
	if res.ConnErrors != 0 || res.Aborted != 0 {
		t.Fatalf("conn errors %v, aborted %d", res.ConnErrorKinds, res.Aborted)
	}
	if res.LatencyMs.Count != 40 || res.LatencyMs.P50 <= 0 || res.LatencyMs.Max < res.LatencyMs.P99 || res.LatencyMs.P99 < res.LatencyMs.P50 {
		t.Fatalf("latency %+v", res.LatencyMs)
	}
	if res.MsgsPerSec <= 0 || res.StopReason != "message count reached (-n)" {
		t.Fatalf("msgs/s %v stop %q", res.MsgsPerSec, res.StopReason)
	}

	be.mu.Lock()
	defer be.mu.Unlock()
	if be.data != 40 || len(be.msgs) != 40 {
		t.Fatalf("server saw %d DATA, %d stored", be.data, len(be.msgs))
	}
	if be.auths != 4 || res.Sessions != 4 {
		t.Fatalf("auths=%d sessions=%d, want 4 (one per connection)", be.auths, res.Sessions)
	}
	ids := map[string]bool{}
	for _, m := range be.msgs {
		if n := len(m.body); n < cfg.Size*9/10 || n > cfg.Size*11/10 {
			t.Errorf("body size %d, want about %d", n, cfg.Size)
		}
		if m.from != testUser || len(m.rcpts) != 1 || m.rcpts[0] != "patient@example.net" {
			t.Errorf("envelope from=%q rcpts=%v", m.from, m.rcpts)
		}
		id := checkMIME(t, m.body)
		if ids[id] {
			t.Errorf("duplicate Message-ID %s", id)
		}
		ids[id] = true
	}
}

func TestRunImplicitTLSReconnectGenRcpts(t *testing.T) {
	be := &testBackend{}
	addr := startServer(t, be, true)
	cfg := testConfig(addr)
	cfg.ImplicitTLS = true
	cfg.PerConn = 3
	cfg.GenRcpts = true
	cfg.To = nil
	cfg.RcptsPerMsg = 3
	cfg.Size = 4096
	res := runT(t, cfg)

	if res.OK != 40 || res.Failed != 0 || res.ConnErrors != 0 {
		t.Fatalf("ok=%d failed=%d failures=%v connErrs=%v", res.OK, res.Failed, res.Failures, res.ConnErrorKinds)
	}
	// 40 messages at <= 3 per connection need at least 14 sessions.
	if res.Sessions < 14 {
		t.Fatalf("sessions=%d, want >= 14", res.Sessions)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.auths != int(res.Sessions) {
		t.Fatalf("server auths %d != sessions %d", be.auths, res.Sessions)
	}
	seen := map[string]bool{}
	for _, m := range be.msgs {
		if len(m.rcpts) != 3 {
			t.Fatalf("rcpts %v", m.rcpts)
		}
		for _, r := range m.rcpts {
			if !strings.HasPrefix(r, "load-") || !strings.HasSuffix(r, "@example.net") {
				t.Fatalf("generated rcpt %q", r)
			}
			seen[r] = true
		}
		if n := len(m.body); n < 3500 || n > 4700 {
			t.Errorf("body size %d, want about 4096", n)
		}
		checkMIME(t, m.body)
	}
	if len(seen) != 4*3 {
		t.Fatalf("distinct generated rcpts %d, want 12", len(seen))
	}
}

func TestRunCountsFailures(t *testing.T) {
	be := &testBackend{rejectEvery: 4}
	addr := startServer(t, be, false)
	cfg := testConfig(addr)
	cfg.Size = 2048
	res := runT(t, cfg)

	if res.OK != 30 || res.Failed != 10 || res.LatencyMs.Count != 30 {
		t.Fatalf("ok=%d failed=%d lat=%d failures=%v", res.OK, res.Failed, res.LatencyMs.Count, res.Failures)
	}
	want := "end of DATA: 554 5.6.0 Message rejected by test policy"
	if len(res.Failures) != 1 || res.Failures[0].Reply != want || res.Failures[0].Count != 10 {
		t.Fatalf("failures %+v, want [{%q 10}]", res.Failures, want)
	}
	// Rejections are per message: connections are kept (no reconnects).
	if res.Sessions != 4 || res.ConnErrors != 0 {
		t.Fatalf("sessions=%d connErrs=%v", res.Sessions, res.ConnErrorKinds)
	}
}

func TestRunConnectionErrorsAreBounded(t *testing.T) {
	t.Run("bad password", func(t *testing.T) {
		be := &testBackend{}
		cfg := testConfig(startServer(t, be, false))
		cfg.Pass = "wrong"
		cfg.MaxRetries = 2
		res := runT(t, cfg)
		if res.OK != 0 || res.Failed != 0 || res.Sessions != 0 {
			t.Fatalf("ok=%d failed=%d sessions=%d", res.OK, res.Failed, res.Sessions)
		}
		// 4 workers x (1 + 2 retries).
		if res.ConnErrors != 12 || len(res.ConnErrorKinds) != 1 ||
			!strings.HasPrefix(res.ConnErrorKinds[0].Reply, "AUTH: 535 5.7.8") {
			t.Fatalf("conn errors %d %+v", res.ConnErrors, res.ConnErrorKinds)
		}
		if !strings.Contains(res.StopReason, "gave up") {
			t.Fatalf("stop reason %q", res.StopReason)
		}
	})
	t.Run("certificate verified when not insecure", func(t *testing.T) {
		cfg := testConfig(startServer(t, &testBackend{}, false))
		cfg.Insecure = false
		cfg.MaxRetries = 0
		res := runT(t, cfg)
		if res.OK != 0 || res.ConnErrors != 4 || len(res.ConnErrorKinds) != 1 ||
			!strings.Contains(res.ConnErrorKinds[0].Reply, "certificate") {
			t.Fatalf("ok=%d conn errors %d %+v", res.OK, res.ConnErrors, res.ConnErrorKinds)
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cfg := testConfig(addr)
		cfg.MaxRetries = 1
		res := runT(t, cfg)
		if res.OK != 0 || res.ConnErrors != 8 || res.ConnErrorKinds[0].Reply != "connect: connection refused" {
			t.Fatalf("conn errors %d %+v", res.ConnErrors, res.ConnErrorKinds)
		}
	})
}

func TestRunDurationStops(t *testing.T) {
	be := &testBackend{dataDelay: 20 * time.Millisecond}
	cfg := testConfig(startServer(t, be, false))
	cfg.N = 1_000_000
	cfg.Size = 1024
	cfg.Duration = 300 * time.Millisecond
	start := time.Now()
	res := runT(t, cfg)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("run took %v with -duration 300ms", el)
	}
	if res.OK == 0 || res.OK >= 200 || res.Failed != 0 {
		t.Fatalf("ok=%d failed=%d", res.OK, res.Failed)
	}
	if res.StopReason != "duration reached (-duration)" {
		t.Fatalf("stop reason %q", res.StopReason)
	}
}

func TestRunCancel(t *testing.T) {
	be := &testBackend{dataDelay: 200 * time.Millisecond}
	cfg := testConfig(startServer(t, be, false))
	cfg.N = 1000
	cfg.Size = 1024
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("cancel took %v", el)
	}
	if res.StopReason != "interrupted" || res.Failed != 0 || res.OK+res.Aborted == 0 {
		t.Fatalf("%+v", res)
	}
}

func TestNonLoopbackRefused(t *testing.T) {
	for _, addr := range []string{
		"10.0.0.1:587", "192.0.2.1:2587", "[2001:db8::1]:587", "mail.example.com:587",
		"0.0.0.0:2587", "[::]:2587", "localhost.example.com:25", "127.0.0.1", "",
	} {
		if err := checkAddr(addr, false); err == nil {
			t.Errorf("checkAddr(%q) accepted", addr)
		}
		cfg := testConfig(addr)
		if _, err := run(context.Background(), cfg); err == nil {
			t.Errorf("run(%q) did not refuse", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:2587", "127.1.2.3:25", "[::1]:2587", "localhost:2587", "LOCALHOST:1"} {
		if err := checkAddr(addr, false); err != nil {
			t.Errorf("checkAddr(%q): %v", addr, err)
		}
	}
	if err := checkAddr("mail.example.com:587", true); err != nil {
		t.Errorf("-allow-remote: %v", err)
	}

	var stderr bytes.Buffer
	code := realMain([]string{"-addr", "203.0.113.5:587", "-user", "u@example.com", "-pass", "x"}, io.Discard, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "not a loopback address") {
		t.Fatalf("realMain exit %d, stderr %q", code, stderr.String())
	}
}

func TestRealMainJSON(t *testing.T) {
	be := &testBackend{}
	addr := startServer(t, be, false)
	passFile := filepath.Join(t.TempDir(), "app-pass")
	if err := os.WriteFile(passFile, []byte(testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := realMain([]string{
		"-addr", addr, "-user", testUser, "-pass-file", passFile,
		"-conns", "2", "-n", "6", "-size", "1000", "-per-conn", "2",
		"-to", "a@example.net, b@example.net", "-json",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s, stdout %s", code, stderr.String(), stdout.String())
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if res.OK != 6 || res.Sessions < 3 || res.Config.Conns != 2 || res.Config.RcptsPerMsg != 2 {
		t.Fatalf("%+v", res)
	}
	if strings.Contains(stdout.String(), testPass) {
		t.Fatal("password leaked into output")
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	for _, m := range be.msgs {
		if strings.Join(m.rcpts, ",") != "a@example.net,b@example.net" {
			t.Fatalf("rcpts %v", m.rcpts)
		}
	}
	// Each connection: RSET between its 2 messages (go-smtp also resets on
	// the post-STARTTLS EHLO and on the re-EHLO after RSET).
	if be.rsets < 3 {
		t.Fatalf("server saw %d resets", be.rsets)
	}
}

// TestRealMainNoAuth runs -no-auth against a STARTTLS server that relays
// without AUTH (like bench/ratio.sh's Postfix): every message is accepted
// and no AUTH is ever sent; -no-auth with credentials is a usage error.
func TestRealMainNoAuth(t *testing.T) {
	be := &testBackend{noAuth: true}
	addr := startServer(t, be, false)
	var stdout, stderr bytes.Buffer
	code := realMain([]string{
		"-addr", addr, "-no-auth", "-from", "load@example.com",
		"-conns", "2", "-n", "6", "-size", "1000", "-per-conn", "3", "-json",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s, stdout %s", code, stderr.String(), stdout.String())
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if res.OK != 6 || res.Failed != 0 || res.Config.Auth {
		t.Fatalf("%+v", res)
	}
	be.mu.Lock()
	if be.auths != 0 || len(be.msgs) != 6 || be.msgs[0].from != "load@example.com" {
		t.Fatalf("server saw %d AUTH, %d messages, from %q", be.auths, len(be.msgs), be.msgs[0].from)
	}
	be.mu.Unlock()

	stderr.Reset()
	if code := realMain([]string{"-addr", addr, "-no-auth", "-user", testUser, "-pass", testPass}, &stdout, &stderr); code != 2 {
		t.Fatalf("-no-auth with -user: exit %d, want 2 (stderr %q)", code, stderr.String())
	}
}

func TestBuildMessageSize(t *testing.T) {
	for _, size := range []int{0, 1000, 20480, 1 << 20} {
		rng := mrand.New(mrand.NewPCG(1, 2))
		m := buildMessage(rng, "a@example.com", []string{"b@example.net"}, "abcd1234", 3, size, time.Now())
		var buf bytes.Buffer
		if err := m.write(&buf, "abcd1234.3.7@smtpload.localhost"); err != nil {
			t.Fatal(err)
		}
		got := buf.Len()
		if size >= 10000 && (got < size*95/100 || got > size*105/100) {
			t.Errorf("size %d: got %d", size, got)
		}
		if size < 10000 && got > 3000 {
			t.Errorf("size %d: got %d (too large)", size, got)
		}
		if !bytes.HasSuffix(buf.Bytes(), []byte("--\r\n")) || bytes.Contains(bytes.ReplaceAll(buf.Bytes(), []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("size %d: bad line endings or ending", size)
		}
		checkMIME(t, buf.Bytes())
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {90, 90 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	l := latencyStats([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond})
	if l.P50 != 2 || l.Max != 3 || l.Mean != 2 || l.Count != 3 {
		t.Errorf("%+v", l)
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty")
	}
}

func TestErrKey(t *testing.T) {
	cases := map[string]error{
		"RCPT: 550 5.1.1 No such user":                   &sessionError{"RCPT", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user\nsecond line"}},
		"MAIL: 451 try later":                            &sessionError{"MAIL", &smtp.SMTPError{Code: 451, Message: "try later"}},
		"DATA body: connection reset by peer":            &sessionError{"DATA body", &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ECONNRESET)}},
		"end of DATA: connection closed by server (EOF)": &sessionError{"end of DATA", io.EOF},
	}
	for want, err := range cases {
		if got := errKey(err); got != want {
			t.Errorf("errKey = %q, want %q", got, want)
		}
	}
	if !fatal(io.EOF) || fatal(&smtp.SMTPError{Code: 550}) || !fatal(&smtp.SMTPError{Code: 421}) {
		t.Error("fatal classification")
	}
	if !fatal(&sessionError{"x", errors.New("boom")}) {
		t.Error("non-SMTP errors are fatal")
	}
}
