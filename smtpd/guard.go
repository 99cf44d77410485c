package smtpd

import (
	"bytes"
	"container/list"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what one client, and all clients together, can hold of the
// SMTP listeners. go-smtp has no connection cap and one ReadTimeout for
// every line (LIBRARY-NOTES), so both are enforced here, at the connection.
type Limits struct {
	// MaxConns caps the connections open on all SMTP listeners together;
	// keep it below the process's file-descriptor limit.
	MaxConns int
	// MaxConnsPerIP caps the connections from one address (IPv6: one /64).
	MaxConnsPerIP int
	// HandshakeTimeout bounds the TLS handshake (implicit TLS and
	// STARTTLS) and the wait for the first command.
	HandshakeTimeout time.Duration
	// CommandTimeout bounds each command line outside an authenticated
	// transaction (before AUTH and between messages). Inside one
	// (after an accepted MAIL, through DATA) Options.ReadTimeout applies.
	CommandTimeout time.Duration
	// DrainTimeout bounds how long a closed connection is still read and
	// discarded, so that a client that was still sending (an over-long
	// line, a refused DATA) reads our last reply instead of a reset.
	DrainTimeout time.Duration
}

// phase says which read timeout applies to a connection.
type phase int32

const (
	phaseHandshake   phase = iota // TLS handshake or waiting for the first command
	phaseCommand                  // outside an authenticated transaction
	phaseTransaction              // MAIL accepted for an authenticated user
)

// tooManyConns is written to a connection over a cap before it is closed,
// without a TLS handshake (RFC 5321 3.8: 421 may be sent at once).
const tooManyConns = "421 4.7.0 too many connections, try again later\r\n"

// errDropped is what a connection dropped after its last reply reads:
// go-smtp ends a session quietly on net.ErrClosed.
var errDropped = net.ErrClosed

// errExpired is a read timeout that stays: once a read deadline passed,
// every later read fails too (see guardConn.Read).
var errExpired = os.ErrDeadlineExceeded

// connSlots counts open connections in all and per address. At the total
// cap a new connection takes the slot of the oldest one that has not
// authenticated yet, so that idle connections from many addresses cannot
// keep a legitimate client out: to hold the gateway, a flood must open
// connections faster than a client authenticates. Authenticated sessions
// are never evicted.
type connSlots struct {
	max, maxPerIP int
	mu            sync.Mutex
	open          int
	perIP         map[string]int
	preAuth       list.List // of *guardConn, oldest first
}

// take admits a connection from c.key, or says no (over the per-address
// cap, or at the total cap with nothing to evict). victim, if not nil, gave
// up its slot and must be closed by the caller.
func (s *connSlots) take(c *guardConn) (ok bool, victim *guardConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxPerIP > 0 && s.perIP[c.key] >= s.maxPerIP {
		return false, nil
	}
	if s.max > 0 && s.open >= s.max {
		front := s.preAuth.Front()
		if front == nil {
			return false, nil
		}
		victim = front.Value.(*guardConn)
		s.releaseLocked(victim)
	}
	s.open++
	s.perIP[c.key]++
	c.elem = s.preAuth.PushBack(c)
	return true, victim
}

// release frees c's slot; only the first call counts.
func (s *connSlots) release(c *guardConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(c)
}

func (s *connSlots) releaseLocked(c *guardConn) {
	if c.released {
		return
	}
	c.released = true
	s.open--
	if s.perIP[c.key]--; s.perIP[c.key] <= 0 {
		delete(s.perIP, c.key)
	}
	s.authenticatedLocked(c)
}

// authenticated takes c out of the eviction order.
func (s *connSlots) authenticated(c *guardConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authenticatedLocked(c)
}

func (s *connSlots) authenticatedLocked(c *guardConn) {
	if c.elem != nil {
		s.preAuth.Remove(c.elem)
		c.elem = nil
	}
}

// Open returns how many SMTP connections are held now.
func (b *Server) Open() int {
	s := b.slots()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// ipKey is the unit connections and failures are counted by: the address
// for IPv4, its /64 for IPv6 (one client usually holds a whole /64).
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}

// guardListener admits connections within the caps and hands out
// guardConns; over a cap it answers 421 and closes at once.
type guardListener struct {
	net.Listener
	b        *Server
	startTLS bool // the STARTTLS port: watch for STARTTLS and pre-TLS AUTH
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr())
		g := &guardConn{Conn: c, b: l.b, ip: ip, key: ipKey(ip), scanPreTLS: l.startTLS}
		ok, victim := l.b.slots().take(g)
		if victim != nil {
			victim.evict()
		}
		if !ok {
			l.refuse(c, ip)
			continue
		}
		// The greeting is written before the first read: bound the
		// handshake and first command from here.
		if d := l.b.Opts.Limits.HandshakeTimeout; d > 0 {
			g.SetReadDeadline(time.Now().Add(d))
		}
		return g, nil
	}
}

// refuse answers a connection over a cap. The write goes to a fresh socket
// buffer, so it does not block the accept loop; a short deadline makes sure.
func (l *guardListener) refuse(c net.Conn, ip string) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, tooManyConns)
	c.Close()
	l.b.Metrics.SMTPRefused("connections")
	l.b.faults().warn("smtp connection refused", "reason", "too many connections", "ip", ip)
}

func hostOf(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// guardConn enforces the per-phase read timeouts, makes a read timeout
// final, and drains input before closing.
//
// go-smtp sets a read deadline of ReadTimeout before each command line;
// SetReadDeadline here shortens it to the phase's timeout.
//
// A read timeout must end the connection with nothing executed. go-smtp
// reads lines with net/textproto, whose bufio.Reader.ReadLine returns the
// bytes of an unterminated line with a nil error when the read fails: the
// partial line would run as a command, and the next read would get a fresh
// deadline. So after a timeout every read fails at once (go-smtp says 421
// and closes); in plain text an unterminated line is never handed on
// (readLines); and under TLS, where lines are not visible here, the
// session methods refuse any command that arrives after the timeout
// (session.gone).
type guardConn struct {
	net.Conn
	b          *Server
	ip, key    string
	phase      atomic.Int32
	expired    atomic.Bool // a read deadline passed
	dropped    atomic.Bool // the session asked to close after its reply
	closeOnce  sync.Once
	elem       *list.Element // in connSlots.preAuth until AUTH; guarded by its mutex
	released   bool          // slot given back; guarded by connSlots.mu
	scanPreTLS bool          // plaintext STARTTLS port, until STARTTLS
	line       []byte        // start of the current plaintext command line
	held       []byte        // plaintext received but not yet handed on (readLines)
	early      []byte        // bytes after STARTTLS already read: the client's first TLS record
}

func (c *guardConn) timeout() time.Duration {
	l := c.b.Opts.Limits
	switch phase(c.phase.Load()) {
	case phaseHandshake:
		return l.HandshakeTimeout
	case phaseCommand:
		return l.CommandTimeout
	}
	return c.b.Opts.ReadTimeout
}

// setPhase is called by the session as it moves between phases.
func (c *guardConn) setPhase(p phase) { c.phase.Store(int32(p)) }

func (c *guardConn) SetReadDeadline(t time.Time) error {
	if d := c.timeout(); d > 0 && !t.IsZero() {
		if limit := time.Now().Add(d); t.After(limit) {
			t = limit
		}
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *guardConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *guardConn) Read(b []byte) (int, error) {
	switch {
	case c.dropped.Load():
		return 0, errDropped
	case c.expired.Load():
		return 0, errExpired
	}
	if c.scanPreTLS {
		return c.readLines(b)
	}
	if len(c.early) > 0 {
		n := copy(b, c.early)
		c.early = c.early[n:]
		return n, nil
	}
	n, err := c.Conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.expired.Store(true)
	}
	return n, err
}

// readLines serves the plaintext part of the STARTTLS port whole lines at
// a time: an unterminated line is held here, and dropped if the client
// times out or goes away, so go-smtp never sees it. (Under TLS the line
// structure is below the record layer and out of sight; there the session
// methods refuse what arrives after a timeout.)
func (c *guardConn) readLines(b []byte) (int, error) {
	for {
		i := bytes.IndexByte(c.held, '\n')
		if i >= 0 || len(c.held) > c.b.Opts.MaxLineLength {
			// An over-long line goes up as it is: go-smtp refuses it.
			end := len(c.held)
			if i >= 0 {
				end = i + 1
			}
			n := copy(b, c.held[:end])
			c.held = c.held[n:]
			c.scan(b[:n])
			if !c.scanPreTLS {
				// STARTTLS: what follows is TLS records, handed on as
				// they come (after the little the client sent early).
				c.early, c.held = c.held, nil
			}
			return n, nil
		}
		var buf [4096]byte
		n, err := c.Conn.Read(buf[:])
		c.held = append(c.held, buf[:n]...)
		if err != nil {
			c.held = nil // an unterminated line is never executed
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.expired.Store(true)
			}
			return 0, err
		}
	}
}

// drop makes the connection end after the reply being written: the next
// read fails and go-smtp closes it.
func (c *guardConn) drop() { c.dropped.Store(true) }

// gone says whether the connection timed out or was dropped: a command
// that still arrives (an unterminated line handed over by the reader) must
// not be executed.
func (c *guardConn) gone() bool { return c.expired.Load() || c.dropped.Load() }

// scan watches plaintext command lines on the STARTTLS port for two verbs:
// STARTTLS (the handshake that follows gets the handshake timeout; after
// it, bytes are TLS records) and AUTH, which go-smtp refuses before TLS
// (523 5.7.10) without calling the backend, so it is logged here. Only the
// verb is looked at; nothing after it is kept or logged.
func (c *guardConn) scan(b []byte) {
	for _, ch := range b {
		if ch != '\n' {
			if len(c.line) < 16 {
				c.line = append(c.line, ch)
			}
			continue
		}
		verb := bytes.ToUpper(bytes.TrimSpace(c.line))
		c.line = c.line[:0]
		switch {
		case bytes.HasPrefix(verb, []byte("STARTTLS")):
			c.scanPreTLS = false
			c.setPhase(phaseHandshake)
			if d := c.b.Opts.Limits.HandshakeTimeout; d > 0 {
				c.SetReadDeadline(time.Now().Add(d))
			}
			return
		case bytes.HasPrefix(verb, []byte("AUTH")):
			c.b.Log.Warn("smtp refused", "stage", "auth", "code", 523, "enhanced", "5.7.10",
				"reason", "AUTH attempted before STARTTLS", "ip", c.ip)
		}
	}
}

// Close frees the connection's slot once its descriptor is closed. Unless
// the client timed out, what it still sends is read and discarded for up
// to DrainTimeout after our side is shut: closing a socket with unread
// input makes the kernel send a reset, and the client would lose our last
// reply (a 500 for an over-long line, say). This runs in its own goroutine
// so that go-smtp's Server.Close, which closes every connection under one
// lock, is not held up; the slot stays taken until it is done.
func (c *guardConn) Close() error {
	c.closeOnce.Do(func() {
		drain := c.b.Opts.Limits.DrainTimeout
		if c.expired.Load() || drain <= 0 {
			c.Conn.Close()
			c.b.slots().release(c)
			return
		}
		go c.drainAndClose(drain)
	})
	return nil
}

// evict closes a connection whose slot a newer one took (connSlots.take):
// its session ends at its next read or write. The descriptor is closed even
// if the connection was being drained, so the caps bound descriptors.
func (c *guardConn) evict() {
	c.closeOnce.Do(func() {})
	c.Conn.Close()
	c.b.faults().warn("smtp connection evicted", "reason", "total cap reached, oldest connection without AUTH", "ip", c.ip)
}

func (c *guardConn) drainAndClose(d time.Duration) {
	defer c.b.slots().release(c)
	defer c.Conn.Close()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.Conn.SetReadDeadline(time.Now().Add(d))
	io.Copy(io.Discard, io.LimitReader(c.Conn, max(c.b.Opts.MaxMessageBytes, 1<<20)))
}

// guardOf finds the guardConn under a session's connection (a *tls.Conn
// after STARTTLS or on the implicit-TLS port); nil for a bare conn.
func guardOf(c net.Conn) *guardConn {
	for c != nil {
		switch v := c.(type) {
		case *guardConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
