// Package outbound hands finished messages to the next hop: the
// organisation's smarthost over TLS, or in dev mode a maildrop folder.
package outbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/config"
)

// Sender delivers one message to the next hop. A *PermanentError means
// retrying will not help.
type Sender interface {
	Send(ctx context.Context, from string, to []string, msg []byte) error
}

type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Maildrop writes each message as one .eml file into Dir (dev mode only).
type Maildrop struct {
	Dir string
	seq atomic.Uint64
}

func (m *Maildrop) Send(_ context.Context, _ string, _ []string, msg []byte) error {
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return err
	}
	name := time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + strconv.FormatUint(m.seq.Add(1), 10) + ".eml"
	tmp := filepath.Join(m.Dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	// Rename after sync: a reader never sees half a file. Then sync the
	// folder so the rename itself survives a power loss.
	if err := os.Rename(tmp, filepath.Join(m.Dir, name)); err != nil {
		return err
	}
	d, err := os.Open(m.Dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Smarthost relays over SMTP with STARTTLS required (or implicit TLS), never
// in the clear.
type Smarthost struct {
	Addr        string
	ImplicitTLS bool
	Username    string
	Password    string
	TLS         *tls.Config
	HeloName    string
	Timeout     time.Duration
}

// NewSmarthost builds a Smarthost from config, reading the password and CA files.
func NewSmarthost(c config.Smarthost, hostname string) (*Smarthost, error) {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("smarthost.addr %q: %w", c.Addr, err)
	}
	s := &Smarthost{Addr: c.Addr, ImplicitTLS: c.ImplicitTLS, Username: c.Username, HeloName: hostname,
		TLS: &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}, Timeout: 2 * time.Minute}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("smarthost.password_file: %w", err)
		}
		s.Password = string(trimNL(b))
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("smarthost.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smarthost.ca_file %s: no certificates found", c.CAFile)
		}
		s.TLS.RootCAs = pool
	}
	return s, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

var ErrNoSTARTTLS = errors.New("the smarthost does not offer STARTTLS; refusing to send in the clear")

// Send delivers one message over a connection of its own.
func (s *Smarthost) Send(ctx context.Context, from string, to []string, msg []byte) error {
	c := s.NewConn()
	defer c.Close()
	return c.Send(ctx, from, to, msg)
}

// Conn is one delivery channel that may stay open across messages.
type Conn interface {
	Send(ctx context.Context, from string, to []string, msg []byte) error
	Close() error
}

// Pooled is a Sender that can hold a connection open for several messages.
type Pooled interface {
	Sender
	NewConn() Conn
}

// Prober is a Sender that can check the next hop is reachable without
// sending anything, so a recovered smarthost is noticed at once.
type Prober interface {
	Probe(ctx context.Context) error
}

// NewConn returns a Conn for s: a persistent one if s is Pooled, else one
// that sends each message on its own.
func NewConn(s Sender) Conn {
	if p, ok := s.(Pooled); ok {
		return p.NewConn()
	}
	return oneShot{s}
}

type oneShot struct{ Sender }

func (oneShot) Close() error { return nil }

// NewConn returns a connection to the smarthost that is dialled on the
// first Send and reused for the next ones (RSET between, RFC 5321 4.1.1.5).
// It is not safe for concurrent use: one per sending goroutine.
func (s *Smarthost) NewConn() Conn { return &smarthostConn{s: s} }

// Probe opens a session as a send would (TLS, AUTH) and quits.
func (s *Smarthost) Probe(ctx context.Context) error {
	c := &smarthostConn{s: s}
	defer c.Close()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return c.open(ctx)
}

type smarthostConn struct {
	s    *Smarthost
	conn net.Conn
	c    *smtp.Client
}

// bound gives ctx the smarthost timeout unless it has a deadline already.
func (s *Smarthost) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); !ok && s.Timeout > 0 {
		return context.WithTimeout(ctx, s.Timeout)
	}
	return ctx, func() {}
}

func (sc *smarthostConn) Send(ctx context.Context, from string, to []string, msg []byte) (err error) {
	ctx, cancel := sc.s.bound(ctx)
	defer cancel()
	if sc.c != nil && sc.reset(ctx) != nil {
		// The smarthost dropped the idle connection: nothing was sent on
		// it, so dialling again cannot duplicate a message.
		sc.drop()
	}
	if sc.c == nil {
		if err := sc.open(ctx); err != nil {
			return err
		}
	}
	// go-smtp sets its own per-command deadlines (five minutes), replacing
	// any deadline set here; closing the connection when ctx ends is what
	// bounds a stalled smarthost.
	conn := sc.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	setDeadline(ctx, conn, sc.s.Timeout)
	defer func() {
		var se *smtp.SMTPError
		if err != nil && !errors.As(err, &se) || ctx.Err() != nil {
			// Only a reply leaves the session in a known state; anything
			// else (or a cut by ctx) ends the connection.
			sc.drop()
		}
		err = blameCtx(ctx, err)
	}()
	if err := sc.c.SendMail(from, to, bytesReader(msg)); err != nil {
		return classify(err)
	}
	// The 250 after DATA handed the message over.
	return nil
}

// open dials and sets up a session: TLS (never in the clear) and AUTH.
func (sc *smarthostConn) open(ctx context.Context) (err error) {
	s := sc.s
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer func() { err = blameCtx(ctx, err) }()
	setDeadline(ctx, conn, s.Timeout)
	var c *smtp.Client
	if s.ImplicitTLS {
		tc := tls.Client(conn, s.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("smarthost TLS: %w", err)
		}
		c = smtp.NewClient(tc)
		if err := c.Hello(s.HeloName); err != nil {
			c.Close()
			return err
		}
	} else {
		// go-smtp greets as "localhost" here; it offers no way to pick the
		// name and still upgrade on the same connection.
		if c, err = smtp.NewClientStartTLS(conn, s.TLS); err != nil {
			conn.Close()
			if strings.Contains(err.Error(), "doesn't support STARTTLS") {
				// Temporary on purpose: the message waits and is retried
				// (an admin can fix the smarthost), never sent in clear.
				return ErrNoSTARTTLS
			}
			return fmt.Errorf("smarthost STARTTLS: %w", err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.Username, s.Password)); err != nil {
			c.Close()
			return classify(fmt.Errorf("smarthost AUTH: %w", err))
		}
	}
	sc.conn, sc.c = conn, c
	return nil
}

// blameCtx reports a failure that ctx's end caused (by closing the
// connection) as that, not as the network error it shows up as.
func blameCtx(ctx context.Context, err error) error {
	var perm *PermanentError
	if err != nil && ctx.Err() != nil && !errors.As(err, &perm) {
		return fmt.Errorf("smarthost: %w", ctx.Err())
	}
	return err
}

// reset sends RSET on a reused connection, bounded by ctx.
func (sc *smarthostConn) reset(ctx context.Context) error {
	conn := sc.conn
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	return sc.c.Reset()
}

func (sc *smarthostConn) drop() {
	if sc.c != nil {
		sc.c.Close()
	}
	sc.conn, sc.c = nil, nil
}

// Close says QUIT (briefly: a smarthost that doesn't answer is not waited
// for) and closes the connection.
func (sc *smarthostConn) Close() error {
	if sc.c == nil {
		return nil
	}
	sc.conn.SetDeadline(time.Now().Add(5 * time.Second))
	// A message already has its 250: a failed QUIT changes nothing.
	_ = sc.c.Quit()
	sc.drop()
	return nil
}

// Unreachable reports whether err means the next hop could not be reached
// or spoken to (no connection, TLS, timeout) rather than a reply about
// this message: the kind of failure a probe can see end.
func Unreachable(err error) bool {
	var se *smtp.SMTPError
	var perm *PermanentError
	return err != nil && !errors.As(err, &se) && !errors.As(err, &perm)
}

func setDeadline(ctx context.Context, conn net.Conn, d time.Duration) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else if d > 0 {
		conn.SetDeadline(time.Now().Add(d))
	}
}

// classify marks 5xx replies as permanent.
func classify(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		return &PermanentError{err}
	}
	return err
}

// Describe gives a PHI-free account of a send error for logs and the outbox
// row: a peer's reply text can echo the recipient address, so only its
// codes are kept.
func Describe(err error) string {
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return fmt.Sprintf("smarthost replied %d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	case errors.Is(err, ErrNoSTARTTLS):
		return ErrNoSTARTTLS.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "network error: " + ne.Error()
	}
	var te *tls.CertificateVerificationError
	if errors.As(err, &te) {
		return "smarthost certificate not trusted"
	}
	return "delivery error"
}
