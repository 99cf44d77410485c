package gateway

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// smtpDrain lets SMTP transactions in DATA finish when the gateway stops
// (issue 9.1). go-smtp's Server.Shutdown closes the listeners and waits for
// sessions to end by themselves, which an idle client may never do, and
// Server.Close cuts sessions in DATA: a client whose message was stored
// but whose 250 was lost sends it again. So the drain tracks, per
// connection, whether a mail transaction is under way (from an accepted
// MAIL to the reply after DATA, RFC 5321 3.3); when stopping starts, every
// other session is told 421 (RFC 5321 3.8) and closed, and a session in a
// transaction is told 421 right after it ends. (Counting from DATA alone
// left a gap: go-smtp writes 354 before it calls the session's Data.)
type smtpDrain struct {
	hostname string
	linger   time.Duration // how long a client has to read our 421 before the socket closes

	mu       sync.Mutex
	draining bool
	conns    map[string]*drainConn // by local and remote address
	inData   int                   // DATA bodies being taken (or committed)
	dataDone chan struct{}         // closed when inData drops to 0
}

// drainConn is one SMTP connection as the drain sees it.
type drainConn struct {
	raw   net.Conn // as accepted: closing it ends the session
	reply net.Conn // the session's connection (TLS after STARTTLS); nil before EHLO
	busy  bool     // a mail transaction is under way
	cut   bool
}

func newSMTPDrain(hostname string) *smtpDrain {
	return &smtpDrain{hostname: hostname, linger: 2 * time.Second, conns: map[string]*drainConn{}}
}

func connKey(c net.Conn) string { return c.LocalAddr().String() + "|" + c.RemoteAddr().String() }

// listener wraps the bare TCP listener, under smtpd's guard and TLS.
func (d *smtpDrain) listener(ln net.Listener) net.Listener { return drainListener{ln, d} }

type drainListener struct {
	net.Listener
	d *smtpDrain
}

func (l drainListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := connKey(c)
		l.d.mu.Lock()
		draining := l.d.draining
		if !draining {
			l.d.conns[key] = &drainConn{raw: c}
		}
		l.d.mu.Unlock()
		if draining {
			// Accepted in the instant the listener was closing.
			c.Close()
			continue
		}
		return &drainedConn{Conn: c, d: l.d, key: key}, nil
	}
}

// drainedConn forgets its entry when closed.
type drainedConn struct {
	net.Conn
	d    *smtpDrain
	key  string
	once sync.Once
}

func (c *drainedConn) Close() error {
	c.once.Do(func() {
		c.d.mu.Lock()
		delete(c.d.conns, c.key)
		c.d.mu.Unlock()
	})
	return c.Conn.Close()
}

// CloseWrite keeps the half-close that smtpd's guard uses to let a client
// read our last reply.
func (c *drainedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// backend wraps the SMTP backend so the drain sees sessions start, take a
// DATA body and reset.
func (d *smtpDrain) backend(b smtp.Backend) smtp.Backend { return drainBackend{b, d} }

type drainBackend struct {
	smtp.Backend
	d *smtpDrain
}

func (b drainBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s, err := b.Backend.NewSession(c)
	if err != nil {
		return s, err
	}
	key := connKey(c.Conn())
	b.d.mu.Lock()
	if e := b.d.conns[key]; e != nil {
		e.reply = c.Conn()
	}
	b.d.mu.Unlock()
	return &drainSession{Session: s, d: b.d, key: key}, nil
}

type drainSession struct {
	smtp.Session
	d   *smtpDrain
	key string
}

// AuthMechanisms and Auth pass AUTH through (go-smtp looks for them by
// type assertion on the session).
func (s *drainSession) AuthMechanisms() []string {
	if a, ok := s.Session.(smtp.AuthSession); ok {
		return a.AuthMechanisms()
	}
	return nil
}

func (s *drainSession) Auth(mech string) (sasl.Server, error) {
	if a, ok := s.Session.(smtp.AuthSession); ok {
		return a.Auth(mech)
	}
	return nil, smtp.ErrAuthUnsupported
}

// errShuttingDown: RFC 5321 3.8, the server may close with 421 when it
// must shut down; the client keeps the message and tries again later.
var errShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message: "Service shutting down, try again later"}

// Mail starts a transaction, unless stopping has begun; the session counts
// as busy while its MAIL is checked, so a stop does not cut it meanwhile.
func (s *drainSession) Mail(from string, opts *smtp.MailOptions) error {
	if !s.d.setBusy(s.key) {
		return errShuttingDown
	}
	err := s.Session.Mail(from, opts)
	if err != nil {
		s.idle()
	}
	return err
}

func (s *drainSession) Data(r io.Reader) error {
	if !s.d.startData(s.key) {
		// Cut before its body started: no 250, so the client still has it.
		return errShuttingDown
	}
	defer s.d.endData()
	return s.Session.Data(r)
}

// Reset runs after the reply to DATA has been written (and on RSET and
// EHLO): the transaction is over.
func (s *drainSession) Reset() {
	s.Session.Reset()
	s.idle()
}

// idle marks the session between transactions; while stopping, it is told
// 421 and closed.
func (s *drainSession) idle() {
	s.d.mu.Lock()
	e := s.d.conns[s.key]
	var cut *drainConn
	if e != nil {
		if s.d.draining && !e.cut {
			e.cut, cut = true, &drainConn{raw: e.raw, reply: e.reply}
		}
		e.busy = false
	}
	s.d.mu.Unlock()
	if cut != nil {
		s.d.say421(cut)
	}
}

func (s *drainSession) Logout() error {
	s.d.mu.Lock()
	if e := s.d.conns[s.key]; e != nil {
		// After STARTTLS go-smtp ends the session and starts another at
		// the next EHLO: until then there is no safe place for a reply.
		e.reply = nil
	}
	s.d.mu.Unlock()
	return s.Session.Logout()
}

// setBusy marks a transaction as starting, unless stopping has begun.
func (d *smtpDrain) setBusy(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.draining {
		return false
	}
	if e := d.conns[key]; e != nil {
		e.busy = true
	}
	return true
}

// startData marks a DATA body as under way, unless the session was
// already cut.
func (d *smtpDrain) startData(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.conns[key]
	if e != nil && e.cut {
		return false
	}
	if d.inData == 0 {
		d.dataDone = make(chan struct{})
	}
	d.inData++
	return true
}

func (d *smtpDrain) endData() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inData--
	if d.inData == 0 {
		close(d.dataDone)
	}
}

// begin starts stopping: every session not in a transaction gets 421 and
// is closed; new connections are closed at once. The listeners must
// already be closed (smtp.Server.Shutdown does that).
func (d *smtpDrain) begin() {
	d.mu.Lock()
	d.draining = true
	var cut []*drainConn
	for _, e := range d.conns {
		if !e.busy && !e.cut {
			e.cut = true
			cut = append(cut, &drainConn{raw: e.raw, reply: e.reply})
		}
	}
	d.mu.Unlock()
	for _, e := range cut {
		d.say421(e)
	}
}

// say421 (given a copy of the entry, taken under the lock) writes the
// shutdown reply where the session can read it, then
// half-closes so the client reads it and our EOF (closing a socket with
// unread input would reset it and could lose the reply), and closes for
// good after linger.
func (d *smtpDrain) say421(e *drainConn) {
	if e.reply != nil {
		e.reply.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(e.reply, "421 4.3.2 "+d.hostname+" Service shutting down, try again later\r\n")
	}
	if cw, ok := e.raw.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		time.AfterFunc(d.linger, func() { e.raw.Close() })
		return
	}
	e.raw.Close()
}

// cutAll ends every connection still open when the grace period is over:
// a transaction still in DATA gets no 250, and its client sends it again.
// It then waits, at most until ctx ends, for DATA bodies already read to
// finish committing, so the store is not closed under them.
func (d *smtpDrain) cutAll(ctx context.Context) int {
	d.mu.Lock()
	var all []net.Conn
	for _, e := range d.conns {
		all = append(all, e.raw)
	}
	done := d.dataDone
	busy := d.inData > 0
	d.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
	if busy {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	return len(all)
}
