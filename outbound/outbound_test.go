package outbound

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/syncbuf"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/config"
)

// ---- Maildrop ----

func TestMaildrop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "maildrop")
	m := &Maildrop{Dir: dir}
	const n = 25
	want := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("To: <p%d@example.net>\r\nSubject: notice %d\r\n\r\n%s\r\n", i, i, strings.Repeat("x", 1000*i))
		want[msg] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- m.Send(context.Background(), "no-reply@clinic.example", []string{"p@example.net"}, []byte(msg))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("maildrop folder mode %o, want 700", st.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		t.Fatalf("%d files, want %d (one per Send, no temp files)", len(ents), n)
	}
	got := map[string]bool{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".tmp") || !strings.HasSuffix(e.Name(), ".eml") {
			t.Errorf("unexpected file %s", e.Name())
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", e.Name(), info.Mode().Perm())
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !want[string(b)] {
			t.Errorf("%s is not one complete message (%d bytes)", e.Name(), len(b))
		}
		got[string(b)] = true
	}
	if len(got) != n {
		t.Errorf("%d distinct messages on disk, want %d", len(got), n)
	}
}

func TestMaildropUnwritable(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permissions; use a path below a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o600)
		if err := (&Maildrop{Dir: filepath.Join(f, "sub")}).Send(context.Background(), "", nil, []byte("x")); err == nil {
			t.Error("send into a path below a file succeeded")
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if err := (&Maildrop{Dir: dir}).Send(context.Background(), "", nil, []byte("x")); err == nil {
		t.Error("send into a read-only folder succeeded")
	}
}

// ---- a real SMTP server (go-smtp) standing in for the smarthost ----

type testCert struct {
	tls    tls.Certificate
	pem    []byte // certificate, for ca_file
	caFile string
}

func newCert(t *testing.T, dnsNames []string, ips []net.IP) *testCert {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smarthost test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCert{
		tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv},
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
	c.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(c.caFile, c.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func localCert(t *testing.T) *testCert {
	return newCert(t, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
}

type delivery struct {
	from    string
	to      []string
	data    []byte
	tls     bool // the connection was TLS when MAIL arrived
	authed  bool
	authTLS bool
}

type backend struct {
	user, pass string
	failRcpt   *smtp.SMTPError
	failData   *smtp.SMTPError

	mu         sync.Mutex
	deliveries []delivery
	mails      int
	auths      []string // "user:pass" as offered
	sessions   int
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.mu.Lock()
	b.sessions++
	b.mu.Unlock()
	return &session{b: b, c: c}, nil
}

func (b *backend) snapshot() (mails int, ds []delivery, auths []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mails, append([]delivery(nil), b.deliveries...), append([]string(nil), b.auths...)
}

type session struct {
	b       *backend
	c       *smtp.Conn
	authed  bool
	authTLS bool
	cur     delivery
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		_, isTLS := s.c.TLSConnectionState()
		s.b.mu.Lock()
		s.b.auths = append(s.b.auths, user+":"+pass)
		s.b.mu.Unlock()
		if user != s.b.user || pass != s.b.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials for " + user}
		}
		s.authed, s.authTLS = true, isTLS
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	_, isTLS := s.c.TLSConnectionState()
	s.b.mu.Lock()
	s.b.mails++
	s.b.mu.Unlock()
	if s.b.user != "" && !s.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.cur = delivery{from: from, tls: isTLS, authed: s.authed, authTLS: s.authTLS}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.b.failRcpt != nil {
		return s.b.failRcpt
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.b.failData != nil {
		return s.b.failData
	}
	s.cur.data = b
	s.b.mu.Lock()
	s.b.deliveries = append(s.b.deliveries, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = delivery{} }
func (s *session) Logout() error { return nil }

type serverMode int

const (
	modeSTARTTLS serverMode = iota
	modePlain               // no TLS at all: STARTTLS not offered
	modeImplicit            // TLS from the first byte
)

// startServer runs a go-smtp server on 127.0.0.1:0 and returns its address
// and protocol transcript.
func startServer(t *testing.T, be *backend, mode serverMode, cert *testCert) (string, *syncbuf.Buffer) {
	t.Helper()
	s := smtp.NewServer(be)
	s.Domain = "smarthost.test"
	s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
	s.ErrorLog = log.New(io.Discard, "", 0)
	transcript := &syncbuf.Buffer{}
	s.Debug = transcript
	var tlsCfg *tls.Config
	if cert != nil {
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert.tls}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case modeSTARTTLS:
		s.TLSConfig = tlsCfg
	case modeImplicit:
		s.TLSConfig = tlsCfg
		l = tls.NewListener(l, tlsCfg)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String(), transcript
}

func passwordFile(t *testing.T, pw string) string {
	p := filepath.Join(t.TempDir(), "smarthost-password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const canary = "CANARY-7f3a9 patient body"

var testMsg = []byte("From: no-reply@clinic.example\r\nTo: pat@example.net\r\nSubject: notice\r\n\r\n" + canary + "\r\n")

func send(t *testing.T, c config.Smarthost) error {
	t.Helper()
	s, err := NewSmarthost(c, "gw.clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	return s.Send(context.Background(), "no-reply@clinic.example", []string{"pat@example.net", "other@example.net"}, testMsg)
}

func TestSmarthostSTARTTLS(t *testing.T) {
	cert := localCert(t)
	be := &backend{user: "gateway", pass: "correct horse battery"}
	addr, transcript := startServer(t, be, modeSTARTTLS, cert)
	err := send(t, config.Smarthost{Addr: addr, CAFile: cert.caFile, Username: "gateway", PasswordFile: passwordFile(t, "correct horse battery")})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	_, ds, auths := be.snapshot()
	if len(ds) != 1 {
		t.Fatalf("%d deliveries", len(ds))
	}
	d := ds[0]
	if !d.tls || !d.authed || !d.authTLS {
		t.Errorf("delivery tls=%v authed=%v authTLS=%v, want all true", d.tls, d.authed, d.authTLS)
	}
	if len(auths) != 1 || auths[0] != "gateway:correct horse battery" {
		t.Errorf("AUTH offered %q", auths)
	}
	if d.from != "no-reply@clinic.example" || strings.Join(d.to, ",") != "pat@example.net,other@example.net" {
		t.Errorf("envelope %s -> %v", d.from, d.to)
	}
	if !bytes.Equal(bytes.ReplaceAll(d.data, []byte("\r\n"), []byte("\n")), bytes.ReplaceAll(testMsg, []byte("\r\n"), []byte("\n"))) {
		t.Errorf("data %q", d.data)
	}
	// go-smtp's Debug transcript logs the plaintext side only up to
	// STARTTLS; nothing of the message may appear before it.
	tr := transcript.String()
	if i := strings.Index(tr, "STARTTLS"); i < 0 {
		t.Errorf("no STARTTLS in transcript:\n%s", tr)
	} else if pre := tr[:i]; strings.Contains(pre, "MAIL FROM") || strings.Contains(pre, "AUTH") || strings.Contains(pre, canary) {
		t.Errorf("sent before STARTTLS:\n%s", pre)
	}
}

func TestSmarthostNoAuth(t *testing.T) {
	cert := localCert(t)
	be := &backend{}
	addr, _ := startServer(t, be, modeSTARTTLS, cert)
	if err := send(t, config.Smarthost{Addr: addr, CAFile: cert.caFile}); err != nil {
		t.Fatal(err)
	}
	if _, ds, auths := be.snapshot(); len(ds) != 1 || !ds[0].tls || len(auths) != 0 {
		t.Errorf("deliveries %+v auths %v", ds, auths)
	}
}

func TestSmarthostRefusesPlaintext(t *testing.T) {
	be := &backend{}
	addr, transcript := startServer(t, be, modePlain, nil)
	err := send(t, config.Smarthost{Addr: addr, Username: "gateway", PasswordFile: passwordFile(t, "pw-never-sent")})
	var perm *PermanentError
	if errors.As(err, &perm) || !errors.Is(err, ErrNoSTARTTLS) {
		t.Fatalf("error %v, want a temporary ErrNoSTARTTLS (wait and retry, never clear)", err)
	}
	if Describe(err) != ErrNoSTARTTLS.Error() {
		t.Errorf("Describe: %q", Describe(err))
	}
	mails, ds, auths := be.snapshot()
	if mails != 0 || len(ds) != 0 || len(auths) != 0 {
		t.Errorf("server saw MAIL %d, deliveries %d, AUTH %v: something was sent in the clear", mails, len(ds), auths)
	}
	tr := transcript.String()
	for _, bad := range []string{"MAIL FROM", "RCPT TO", "DATA", "AUTH", canary, "pat@example.net", "pw-never-sent"} {
		if strings.Contains(tr, bad) {
			t.Errorf("%q sent in the clear:\n%s", bad, tr)
		}
	}
}

func TestSmarthostImplicitTLS(t *testing.T) {
	cert := localCert(t)
	be := &backend{user: "gateway", pass: "pw"}
	addr, _ := startServer(t, be, modeImplicit, cert)
	err := send(t, config.Smarthost{Addr: addr, ImplicitTLS: true, CAFile: cert.caFile, Username: "gateway", PasswordFile: passwordFile(t, "pw")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ds, _ := be.snapshot(); len(ds) != 1 || !ds[0].tls || !ds[0].authTLS || !strings.Contains(string(ds[0].data), canary) {
		t.Errorf("deliveries %+v", ds)
	}
	// Implicit TLS against a plaintext server fails; nothing is sent.
	be2 := &backend{}
	addr2, tr2 := startServer(t, be2, modePlain, nil)
	if err := send(t, config.Smarthost{Addr: addr2, ImplicitTLS: true, CAFile: cert.caFile}); err == nil {
		t.Fatal("implicit TLS to a plaintext server succeeded")
	}
	if mails, _, _ := be2.snapshot(); mails != 0 || strings.Contains(tr2.String(), canary) {
		t.Errorf("plaintext server got MAIL %d / transcript %q", mails, tr2.String())
	}
}

func TestSmarthostUntrustedCert(t *testing.T) {
	cert := localCert(t)
	other := localCert(t)
	wrongName := newCert(t, []string{"other.example"}, nil)
	cases := []struct {
		name   string
		mode   serverMode
		server *testCert
		ca     string
	}{
		{"starttls, system roots", modeSTARTTLS, cert, ""},
		{"starttls, other CA", modeSTARTTLS, cert, other.caFile},
		{"starttls, wrong name", modeSTARTTLS, wrongName, wrongName.caFile},
		{"implicit, system roots", modeImplicit, cert, ""},
		{"implicit, other CA", modeImplicit, cert, other.caFile},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be := &backend{user: "gateway", pass: "pw"}
			addr, transcript := startServer(t, be, c.mode, c.server)
			err := send(t, config.Smarthost{Addr: addr, ImplicitTLS: c.mode == modeImplicit, CAFile: c.ca, Username: "gateway", PasswordFile: passwordFile(t, "pw")})
			if err == nil {
				t.Fatal("delivered to a smarthost with an untrusted certificate")
			}
			mails, ds, auths := be.snapshot()
			if mails != 0 || len(ds) != 0 || len(auths) != 0 {
				t.Errorf("MAIL %d deliveries %d AUTH %v despite untrusted certificate", mails, len(ds), auths)
			}
			if tr := transcript.String(); strings.Contains(tr, canary) || strings.Contains(tr, "MAIL FROM") {
				t.Errorf("sent in the clear:\n%s", tr)
			}
			if d := Describe(err); d != "smarthost certificate not trusted" {
				t.Errorf("Describe = %q (err %v)", d, err)
			}
		})
	}
}

func TestSmarthostReplies(t *testing.T) {
	cert := localCert(t)
	leaky := "mailbox pat@example.net unavailable, Subject: CANARY-subject"
	cases := []struct {
		name      string
		be        *backend
		pw        string
		permanent bool
		describe  string
	}{
		{"5xx at RCPT", &backend{failRcpt: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: leaky}}, "", true, "smarthost replied 550 5.1.1"},
		{"4xx at RCPT", &backend{failRcpt: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: leaky}}, "", false, "smarthost replied 451 4.3.0"},
		{"5xx at DATA", &backend{failData: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: leaky}}, "", true, "smarthost replied 554 5.6.0"},
		{"4xx at DATA", &backend{failData: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: leaky}}, "", false, "smarthost replied 452 4.3.1"},
		{"bad credentials", &backend{user: "gateway", pass: "right"}, "wrong", true, "smarthost replied 535 5.7.8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := startServer(t, c.be, modeSTARTTLS, cert)
			sc := config.Smarthost{Addr: addr, CAFile: cert.caFile}
			if c.pw != "" {
				sc.Username, sc.PasswordFile = "gateway", passwordFile(t, c.pw)
			}
			err := send(t, sc)
			if err == nil {
				t.Fatal("no error")
			}
			var perm *PermanentError
			if got := errors.As(err, &perm); got != c.permanent {
				t.Errorf("permanent = %v, want %v (%v)", got, c.permanent, err)
			}
			d := Describe(err)
			if d != c.describe {
				t.Errorf("Describe = %q, want %q", d, c.describe)
			}
			for _, bad := range []string{"pat@example.net", "CANARY", "unavailable", "gateway"} {
				if strings.Contains(d, bad) {
					t.Errorf("Describe leaks %q: %q", bad, d)
				}
			}
			if _, ds, _ := c.be.snapshot(); len(ds) != 0 {
				t.Errorf("delivered despite the error")
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	smtpErr := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user pat@example.net"}
	cases := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{smtpErr, "smarthost replied 550 5.1.1"},
		{&PermanentError{fmt.Errorf("smarthost AUTH: %w", smtpErr)}, "smarthost replied 550 5.1.1"},
		{&PermanentError{ErrNoSTARTTLS}, ErrNoSTARTTLS.Error()},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "timed out"},
		{errors.New("something about pat@example.net and Subject: results"), "delivery error"},
		{&PermanentError{errors.New("unknown outbox kind pat@example.net")}, "delivery error"},
		{&tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, "smarthost certificate not trusted"},
	}
	for _, c := range cases {
		if got := Describe(c.err); got != c.want {
			t.Errorf("Describe(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	var ne net.Error = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	if got := Describe(ne); !strings.HasPrefix(got, "network error: ") {
		t.Errorf("Describe(net error) = %q", got)
	}
}

func TestNewSmarthostConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "bad.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	cases := []struct {
		name string
		c    config.Smarthost
		want string
	}{
		{"no port", config.Smarthost{Addr: "relay.example"}, "smarthost.addr"},
		{"missing password file", config.Smarthost{Addr: "relay.example:587", PasswordFile: filepath.Join(dir, "none")}, "smarthost.password_file"},
		{"missing ca file", config.Smarthost{Addr: "relay.example:587", CAFile: filepath.Join(dir, "none")}, "smarthost.ca_file"},
		{"ca file without certificates", config.Smarthost{Addr: "relay.example:587", CAFile: notPEM}, "no certificates"},
	}
	for _, c := range cases {
		if _, err := NewSmarthost(c.c, "gw"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want error naming %s", c.name, err, c.want)
		}
	}
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\r\n\n"), 0o600)
	s, err := NewSmarthost(config.Smarthost{Addr: "relay.example:587", PasswordFile: pw, Username: "u"}, "gw")
	if err != nil {
		t.Fatal(err)
	}
	if s.Password != "s3cret" || s.TLS.ServerName != "relay.example" || s.TLS.MinVersion < tls.VersionTLS12 || s.HeloName != "gw" {
		t.Errorf("smarthost %+v", s)
	}
}

// ---- fakes for misbehaving peers (raw sockets) ----

// A smarthost that stalls must not hold Send past its context (go-smtp's
// own per-command deadlines are five minutes and replace the conn's).
func TestSmarthostHonoursContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		// Greet, read EHLO (the client is now waiting for a reply), then
		// stall for ever.
		fmt.Fprintf(c, "220 slow ESMTP\r\n")
		bufio.NewReader(c).ReadString('\n')
		accepted <- c
	}()
	s, err := NewSmarthost(config.Smarthost{Addr: l.Addr().String()}, "gw")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Send(ctx, "a@clinic.example", []string{"b@example.net"}, testMsg) }()
	c := <-accepted
	defer c.Close()
	cancel()
	err = <-done
	if err == nil {
		t.Fatal("Send succeeded against a silent server")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want one wrapping context.Canceled", err)
	}
	var perm *PermanentError
	if errors.As(err, &perm) {
		t.Error("a cancelled send must stay retryable")
	}
}

// fakeSmarthost speaks just enough SMTP over implicit TLS to accept one
// message, then hangs up on QUIT without answering.
func fakeSmarthost(t *testing.T, cert *testCert, got chan<- string) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.tls}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprintf(c, "220 fake ESMTP\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.ToUpper(strings.Fields(line + " x")[0])
			switch cmd {
			case "EHLO", "HELO":
				fmt.Fprintf(c, "250-fake\r\n250 8BITMIME\r\n")
			case "MAIL", "RCPT", "RSET", "NOOP":
				fmt.Fprintf(c, "250 ok\r\n")
			case "DATA":
				fmt.Fprintf(c, "354 go on\r\n")
				var body strings.Builder
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
					body.WriteString(l)
				}
				fmt.Fprintf(c, "250 2.0.0 queued\r\n")
				got <- body.String()
			case "QUIT":
				return // hang up without 221
			default:
				fmt.Fprintf(c, "502 no\r\n")
			}
		}
	}()
	return l.Addr().String()
}

// After "250" to DATA the smarthost owns the message: a failed QUIT must
// not make the caller send it again (duplicate notices, duplicate relays).
func TestSmarthostAcceptedThenHangup(t *testing.T) {
	cert := localCert(t)
	got := make(chan string, 1)
	addr := fakeSmarthost(t, cert, got)
	err := send(t, config.Smarthost{Addr: addr, ImplicitTLS: true, CAFile: cert.caFile})
	body := <-got
	if !strings.Contains(body, canary) {
		t.Fatalf("fake did not get the message: %q", body)
	}
	if err != nil {
		t.Errorf("message accepted with 250, yet Send failed: %v", err)
	}
}
