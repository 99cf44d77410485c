package e2e

import (
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/textproto"
	"testing"
	"time"
)

// Raw is a line-level SMTP client for tests that need exact reply codes in
// states a well-behaved client library would not enter.
type Raw struct {
	t    testing.TB
	conn net.Conn
	tp   *textproto.Conn
}

// DialRaw connects and reads the greeting.
func DialRaw(t testing.TB, addr string) *Raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := &Raw{t: t, conn: c, tp: textproto.NewConn(c)}
	t.Cleanup(func() { c.Close() })
	if code, msg := r.read(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return r
}

func (r *Raw) read() (int, string) {
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil && code == 0 {
		r.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// Cmd sends one line and returns the reply code and text.
func (r *Raw) Cmd(line string) (int, string) {
	r.t.Helper()
	if err := r.tp.PrintfLine("%s", line); err != nil {
		r.t.Fatal(err)
	}
	return r.read()
}

// StartTLS upgrades the connection.
func (r *Raw) StartTLS() {
	r.t.Helper()
	if code, msg := r.Cmd("STARTTLS"); code != 220 {
		r.t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	tc := tls.Client(r.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn = tc
	r.tp = textproto.NewConn(tc)
}

// AuthPlain returns the reply to AUTH PLAIN with an initial response.
func (r *Raw) AuthPlain(user, pass string) (int, string) {
	return r.Cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
}

// Write sends raw bytes (DATA bodies) and returns the next reply.
func (r *Raw) Write(b []byte) (int, string) {
	r.t.Helper()
	if _, err := r.tp.W.Write(b); err != nil {
		r.t.Fatal(err)
	}
	if err := r.tp.W.Flush(); err != nil {
		r.t.Fatal(err)
	}
	return r.read()
}

// Conn is the connection (TLS after StartTLS), for writes that expect no
// reply yet, such as the first half of a DATA body.
func (r *Raw) Conn() net.Conn { return r.conn }

// Read returns the next reply without sending anything (a server may
// speak first, as with 421 when it shuts down).
func (r *Raw) Read() (int, string) {
	r.t.Helper()
	return r.read()
}

// ReadErr is Read for a connection that may have been closed: it returns
// code 0 and the error text instead of failing the test.
func (r *Raw) ReadErr() (int, string) {
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, err.Error()
	}
	return code, msg
}
