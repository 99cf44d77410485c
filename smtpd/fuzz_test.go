package smtpd_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/internal/e2e"
)

const fuzzUser = "dr.fuzz@clinic.example"

// FuzzSMTPSession drives the gateway's own SMTP listeners (a gateway
// started as serve starts it, on 127.0.0.1:0) with a fuzzed byte stream sent
// in one piece, as a pipelining client would: commands, DATA framing with
// dot-stuffing and bare CR/LF, SASL PLAIN and LOGIN exchanges. plain picks the
// STARTTLS port (the stream is sent before any TLS), else the implicit-TLS
// port. In the stream, {USER} {PASS} {B64USER} {B64PASS} and {PLAIN} become a
// real account's app password credentials, so the fuzzer reaches the
// authenticated states. Whatever the stream, the server does not crash or
// panic (go-smtp would recover a panic and answer 421 "Internal server
// error"), answers or closes once the client has finished sending, and then
// still serves a new client (greeting, EHLO, NOOP). Seeds below and in
// testdata/fuzz/FuzzSMTPSession.
func FuzzSMTPSession(f *testing.F) {
	msg := "From: <{USER}>\r\nTo: <p@example.net>\r\nSubject: s\r\n\r\nbody\r\n..dot-stuffed\r\n.\r\n"
	for _, s := range []struct {
		plain  bool
		script string
	}{
		{false, "EHLO fuzz.example\r\nAUTH PLAIN {PLAIN}\r\nMAIL FROM:<{USER}>\r\nRCPT TO:<p@example.net>\r\nDATA\r\n" + msg + "QUIT\r\n"},
		{false, "EHLO fuzz.example\r\nAUTH LOGIN\r\n{B64USER}\r\n{B64PASS}\r\nMAIL FROM:<{USER}> SIZE=120\r\nRCPT TO:<a@clinic.example>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + msg + "RSET\r\nNOOP\r\nQUIT\r\n"},
		{false, "EHLO x\r\nAUTH LOGIN {B64USER}\r\n{B64PASS}\r\nMAIL FROM:<{USER}>\r\nRCPT TO:<p@example.net>\r\nDATA\r\nSubject: bare\n\nlf\rcr\r\n.\r\n"},
		{false, "EHLO x\r\nAUTH LOGIN\r\n*\r\nAUTH LOGIN\r\nnot base64\r\nAUTH PLAIN\r\n=\r\nAUTH CRAM-MD5\r\nMAIL FROM:<{USER}>\r\n"},
		{false, "HELO x\r\nAUTH PLAIN {PLAIN}\r\nMAIL FROM:<{USER}>\r\nRCPT TO:<\"q\"@example.net>\r\nRCPT TO:<a%b@example.net>\r\nRCPT TO:<x@[127.0.0.1]>\r\nBDAT 4 LAST\r\nabcdDATA\r\n.\r\n"},
		{false, "EHLO x\r\nAUTH PLAIN {PLAIN}\r\nMAIL FROM:<{USER}>\r\nRCPT TO:<p@example.net>\r\nDATA\r\nSubject: cut"},
		{true, "EHLO fuzz.example\r\nAUTH PLAIN {PLAIN}\r\nMAIL FROM:<{USER}>\r\nSTARTTLS\r\nEHLO again\r\n"},
		{true, "EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello"},
		{true, string(bytes.Repeat([]byte("NOOP "), 400)) + "\r\nQUIT\r\n"},
	} {
		f.Add(s.plain, []byte(s.script))
	}
	h := e2e.Start(f, e2e.Config(f.TempDir()))
	pass := h.AddStaff(fuzzUser)
	b64 := base64.StdEncoding.EncodeToString
	creds := [][2]string{
		{"{B64USER}", b64([]byte(fuzzUser))}, {"{B64PASS}", b64([]byte(pass))},
		{"{PLAIN}", b64([]byte("\x00" + fuzzUser + "\x00" + pass))},
		{"{USER}", fuzzUser}, {"{PASS}", pass},
	}
	f.Fuzz(func(t *testing.T, plain bool, script []byte) {
		for _, c := range creds {
			script = bytes.ReplaceAll(script, []byte(c[0]), []byte(c[1]))
		}
		addr := h.SMTPS
		if plain {
			addr = h.SMTP
		}
		replies := playScript(t, addr, !plain, script)
		if bytes.Contains(replies, []byte("Internal server error")) {
			t.Fatalf("the server panicked (go-smtp recovered it)\nscript: %q\nreplies:\n%s", script, replies)
		}
		checkServes(t, h.SMTPS)
	})
}

// sessionBound is how long a session may take to end once the client has
// sent everything and half-closed: far more than any answer needs, far less
// than the server's read timeout (minutes), so a server that waits for more
// input after EOF is caught.
const sessionBound = 20 * time.Second

// playScript sends script in one write (reading the replies meanwhile),
// half-closes, requires the server to end the session, and returns the
// replies.
func playScript(t *testing.T, addr string, implicit bool, script []byte) []byte {
	t.Helper()
	var conn net.Conn
	var err error
	if implicit {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(sessionBound))
	read := make(chan error, 1)
	var replies bytes.Buffer
	go func() {
		_, err := io.Copy(&replies, conn)
		read <- err
	}()
	// The server may close early (e.g. after a failed STARTTLS): a write
	// error is not a failure, an endless session is.
	conn.Write(script)
	switch c := conn.(type) {
	case *tls.Conn:
		c.CloseWrite()
	case *net.TCPConn:
		c.CloseWrite()
	}
	if err := <-read; errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("session still open %s after the client finished sending\nscript: %q", sessionBound, script)
	}
	return replies.Bytes()
}

// checkServes requires a new client to be greeted and answered.
func checkServes(t *testing.T, addr string) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("server no longer accepts connections: %v", err)
	}
	conn.SetDeadline(time.Now().Add(sessionBound))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("check.example"); err != nil {
		t.Fatalf("server no longer answers EHLO: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("server no longer answers NOOP: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
}
