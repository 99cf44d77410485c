package smtpd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/syncbuf"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/logx"
)

// testServer is a Server without identity or intake behind real loopback
// listeners: enough for everything up to AUTH.
type testServer struct {
	b        *Server
	startTLS string // STARTTLS port
	implicit string // implicit-TLS port
	logs     *syncbuf.Buffer
}

// long is a timeout no test waits for: a test that passes with it set
// shows that a shorter one applied.
const long = time.Hour

// testLimits has every timeout long; tests shorten the one they test.
func testLimits() Limits {
	return Limits{MaxConns: 1000, MaxConnsPerIP: 1000, HandshakeTimeout: long, CommandTimeout: long, DrainTimeout: 5 * time.Second}
}

func startServer(t *testing.T, lim Limits) *testServer {
	t.Helper()
	dir := t.TempDir()
	logs := &syncbuf.Buffer{}
	log := logx.New(logs, "text", "debug")
	tlsCfg, err := keys.LoadTLS(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "localhost", true, log)
	if err != nil {
		t.Fatal(err)
	}
	b := &Server{Log: log, Opts: Options{Hostname: "mx.test", MaxMessageBytes: 1 << 20, MaxRecipients: 10,
		MaxLineLength: 1000, ReadTimeout: long, WriteTimeout: 10 * time.Second, TLS: tlsCfg, Limits: lim,
		Auth: AuthLimits{MaxPerConn: 3, MaxPerIP: 20, Window: time.Minute}}}
	ts := &testServer{b: b, logs: logs}
	for _, implicit := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := b.NewSMTPServer()
		go srv.Serve(b.WrapListener(ln, implicit))
		t.Cleanup(func() { srv.Close() })
		if implicit {
			ts.implicit = ln.Addr().String()
		} else {
			ts.startTLS = ln.Addr().String()
		}
	}
	return ts
}

// client is one raw SMTP connection from a chosen loopback address.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dial connects from 127.0.0.<from> (so tests can be several addresses).
func dial(t *testing.T, from, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// A safety net only: every test ends long before it.
	c.SetDeadline(time.Now().Add(time.Minute))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// dialTLS connects to the implicit-TLS port.
func dialTLS(t *testing.T, from, addr string) *client {
	t.Helper()
	c := dial(t, from, addr)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	return c
}

// reply reads one (possibly multi-line) reply: its last line.
func (c *client) reply() string {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading a reply: %v (got %q)", err, line)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.reply()
}

// rest reads until the server closes: what it still said, and whether it
// ended in an orderly close (EOF) rather than a reset.
func (c *client) rest() (string, error) {
	b, err := io.ReadAll(c.r)
	return string(b), err
}

// startTLS upgrades a connection on the STARTTLS port.
func (c *client) startTLS() {
	c.t.Helper()
	if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "220") {
		c.t.Fatalf("STARTTLS: %s", r)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// waitOpen waits until the server holds n connections (slots are freed
// when a closed connection's descriptor is, just after the client sees
// the close).
func waitOpen(t *testing.T, b *Server, n int) {
	t.Helper()
	for i := 0; b.Open() != n; i++ {
		if i > 3000 {
			t.Fatalf("server holds %d connections, want %d", b.Open(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}
