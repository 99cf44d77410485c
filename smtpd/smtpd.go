// Package smtpd is the submission intake: STARTTLS (or implicit TLS), AUTH
// with app passwords, MAIL/RCPT checks, and DATA handed to intake. Every
// refusal is logged with its code and the client's address, never content.
package smtpd

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/audit"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/metrics"
	"github.com/phigate/phigate/quota"
	"github.com/phigate/phigate/store"
)

type Options struct {
	Hostname        string
	MaxMessageBytes int64
	MaxRecipients   int
	MaxLineLength   int
	// ReadTimeout is the read deadline inside an authenticated transaction
	// (it covers a whole DATA body); Limits has the shorter ones.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	TLS          *tls.Config
	Limits       Limits
	Auth         AuthLimits
	// FaultLogEvery is how often one kind of repeated fault is logged
	// (default 10 s); the lines in between are counted.
	FaultLogEvery time.Duration
}

// Server is the go-smtp backend.
type Server struct {
	Intake   *intake.Intake
	Identity *identity.Service
	Log      *slog.Logger
	Metrics  *metrics.M // may be nil
	Audit    audit.Recorder
	Opts     Options

	initOnce sync.Once
	conns    *connSlots
	clientsW *clients
	faultLog *faultLog
}

// init builds the counters shared by every listener of this backend.
func (b *Server) init() {
	b.initOnce.Do(func() {
		b.conns = &connSlots{max: b.Opts.Limits.MaxConns, maxPerIP: b.Opts.Limits.MaxConnsPerIP, perIP: map[string]int{}}
		b.clientsW = newClients(b.Opts.Auth)
		b.faultLog = newFaultLog(b.Log, cmp.Or(b.Opts.FaultLogEvery, 10*time.Second))
	})
}

func (b *Server) slots() *connSlots { b.init(); return b.conns }
func (b *Server) clients() *clients { b.init(); return b.clientsW }
func (b *Server) faults() *faultLog { b.init(); return b.faultLog }

// NewSMTPServer returns a go-smtp server for this backend. implicitTLS
// selects port-465 behaviour (RFC 8314); otherwise STARTTLS is offered.
func (b *Server) NewSMTPServer() *smtp.Server {
	s := smtp.NewServer(b)
	s.Domain = b.Opts.Hostname
	s.MaxMessageBytes = b.Opts.MaxMessageBytes
	// Recipients are counted in Rcpt so the refusal is logged; go-smtp's own
	// check would answer without telling us.
	s.MaxRecipients = 0
	s.MaxLineLength = b.Opts.MaxLineLength
	// One deadline per command line that also covers the whole DATA body:
	// minutes, or large messages on slow links time out (LIBRARY-NOTES).
	s.ReadTimeout = b.Opts.ReadTimeout
	s.WriteTimeout = b.Opts.WriteTimeout
	s.TLSConfig = b.Opts.TLS
	s.AllowInsecureAuth = false
	s.ErrorLog = slogPrinter{b.faults()}
	return s
}

// WrapListener prepares ln for the implicit-TLS port (RFC 8314) or for the
// STARTTLS port (implicit=false). Connections over the caps in Opts.Limits
// are answered and closed before any TLS handshake; the caps are shared by
// every listener wrapped by b.
func (b *Server) WrapListener(ln net.Listener, implicit bool) net.Listener {
	g := &guardListener{Listener: ln, b: b, startTLS: !implicit}
	if implicit {
		return tls.NewListener(g, b.Opts.TLS)
	}
	return g
}

// slogPrinter is go-smtp's error log (handshake failures, connection
// errors), rate-limited: a flood repeats the same few lines.
type slogPrinter struct{ f *faultLog }

// Printf lines of one format are one kind: "error handling <addr>: …"
// names a different client each time.
func (p slogPrinter) Printf(format string, v ...interface{}) {
	p.f.logAt(context.Background(), slog.LevelWarn, "go-smtp "+format, "smtp", "msg", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...interface{}) { p.f.warn("smtp", "msg", fmt.Sprint(v...)) }

// NewSession runs at the first EHLO/HELO (and the first after STARTTLS).
func (b *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{b: b, conn: c, cid: logx.NewCorrelationID(), ip: remoteIP(c.Conn()), guard: guardOf(c.Conn())}
	s.ctx = logx.WithCorrelation(context.Background(), s.cid)
	if err := s.gone(); err != nil {
		return nil, err
	}
	if !validHelo(c.Hostname()) {
		return nil, s.fail("helo", errBadHelo)
	}
	s.setPhase(phaseCommand)
	b.Log.InfoContext(s.ctx, "smtp connect", "ip", s.ip)
	s.audit("smtp.connect", "connection", s.cid, "ok", nil)
	return s, nil
}

func remoteIP(c net.Conn) string {
	if c == nil {
		return ""
	}
	return hostOf(c.RemoteAddr())
}

type session struct {
	b     *Server
	conn  *smtp.Conn
	cid   string
	ctx   context.Context
	ip    string
	guard *guardConn // nil only for connections not from WrapListener

	authFails int // failed AUTH attempts on this connection

	user *store.User
	from string
	to   []string
	size int64 // declared with MAIL SIZE=, 0 if not
	txn  int   // accepted transactions in this session
	// ticket holds the account's transaction slot from MAIL to the end
	// of the transaction (senders.go).
	ticket *quota.Ticket
}

// fail logs a refusal or fault and returns what go-smtp must send.
func (s *session) fail(stage string, e *Error) error {
	attrs := []any{"stage", stage, "code", e.Code,
		"enhanced", fmt.Sprintf("%d.%d.%d", e.Enhanced[0], e.Enhanced[1], e.Enhanced[2]), "ip", s.ip}
	if s.user != nil {
		attrs = append(attrs, "user", s.user.ID)
	}
	s.b.Metrics.SMTPRefused(refusalLabel(stage, e))
	s.audit("smtp.refuse", "connection", s.cid, "refused", map[string]string{"stage": stage,
		"code": fmt.Sprint(e.Code), "enhanced": fmt.Sprintf("%d.%d.%d", e.Enhanced[0], e.Enhanced[1], e.Enhanced[2]), "reason": e.Message})
	if e.Fault {
		// Faults repeat identically under a full disk or a dead database:
		// logged at a bounded rate (the same kind at most once per interval).
		kind := fmt.Sprintf("fault %s %d %v", stage, e.Code, e.Cause)
		s.b.faults().logAt(s.ctx, slog.LevelError, kind, "smtp fault", append(attrs, "err", e.Cause)...)
	} else if s.user == nil {
		// Before AUTH a client can repeat a refusal at will: one line per
		// kind and address per interval.
		kind := fmt.Sprintf("refused %s %d %s %s", stage, e.Code, ipKey(s.ip), e.Message)
		s.b.faults().logAt(s.ctx, slog.LevelWarn, kind, "smtp refused", append(attrs, "reason", e.Message)...)
	} else {
		s.b.Log.WarnContext(s.ctx, "smtp refused", append(attrs, "reason", e.Message)...)
	}
	return e.reply(s.cid)
}

// gone returns the reply for a command that arrives after the connection
// timed out or was dropped (nil otherwise); the command is not executed, and
// the connection closes after that reply. See guardConn.
func (s *session) gone() *smtp.SMTPError {
	if s.guard == nil || !s.guard.gone() {
		return nil
	}
	s.guard.drop()
	return errTimedOut.reply(s.cid)
}

// drop closes the connection after the reply being sent.
func (s *session) drop() {
	if s.guard != nil {
		s.guard.drop()
	}
}

func (s *session) setPhase(p phase) {
	if s.guard != nil {
		s.guard.setPhase(p)
	}
}

func (s *session) tls() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	if err := s.gone(); err != nil {
		return nil, err
	}
	if err := s.authThrottled(); err != nil {
		return nil, err
	}
	check := func(authz, username, password string) error {
		if err := s.gone(); err != nil {
			return err
		}
		if authz != "" && !strings.EqualFold(authz, username) {
			return s.authFailed(username, mech, errAuthzMismatch)
		}
		u, err := s.b.Identity.CheckAppPassword(s.ctx, username, password)
		if errors.Is(err, identity.ErrBadCredentials) {
			return s.authFailed(username, mech, errAuthFailed)
		}
		if err != nil {
			return s.fail("auth", fault(err))
		}
		s.user = u
		if s.guard != nil {
			// An authenticated session's slot is never given to a newcomer.
			s.b.slots().authenticated(s.guard)
		}
		s.b.Log.InfoContext(s.ctx, "smtp auth ok", "ip", s.ip, "user", u.ID, "mech", mech)
		s.audit("smtp.auth", "user", u.ID, "ok", map[string]string{"mech": mech})
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return newLoginServer(func(u, p string) error { return check("", u, p) }), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authThrottled refuses AUTH from an address that used up its failures,
// without checking the password, and drops the connection.
func (s *session) authThrottled() error {
	blocked, ended := s.b.clients().blocked(s.ip)
	s.b.flush(ended)
	if !blocked {
		return nil
	}
	s.drop()
	return s.fail("auth", errAuthThrottled)
}

// authFailed records a failed AUTH, waits the failure delay, and answers
// 535, or 421 and drops the connection once this connection or its address
// has failed too often. The address's failures are written to the audit
// trail once per window with their count (clients), and the failure that
// uses up its allowance is audited as an auth.lockout, which alerts the
// security officer as a portal lock-out does.
func (s *session) authFailed(username, mech string, refusal *Error) error {
	s.authFails++
	s.b.Log.WarnContext(s.ctx, "smtp auth failed", "ip", s.ip, "username", logx.Addr(username), "mech", mech)
	s.audit("smtp.auth", "connection", s.cid, "failed", map[string]string{"username": username, "mech": mech})
	blockedNow, until, ended := s.b.clients().authFailed(s.ip)
	s.b.flush(ended)
	if blockedNow {
		s.b.Log.WarnContext(s.ctx, "smtp auth throttled", "ip", s.ip, "until", until)
		s.b.writeAudit(s.ctx, audit.Entry{Actor: "smtp:" + s.ip, IP: s.ip, Action: "auth.lockout", ObjectType: "smtp",
			ObjectID: "smtp-auth", Outcome: "ok", Correlation: s.cid,
			Details: map[string]string{"until": until.UTC().Format(time.RFC3339), "failures": fmt.Sprint(s.b.Opts.Auth.MaxPerIP)}})
	}
	// The delay slows guessing on this connection; the caps bound how many
	// connections can wait at once.
	time.Sleep(s.b.Opts.Auth.FailureDelay)
	if blockedNow || s.authFails >= cmp.Or(s.b.Opts.Auth.MaxPerConn, 3) {
		s.drop()
		return s.fail("auth", errAuthThrottled)
	}
	return s.fail("auth", refusal)
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.gone(); err != nil {
		return err
	}
	// A second EHLO is not shown to NewSession: check the name it left.
	if !validHelo(s.conn.Hostname()) {
		return s.fail("mail", errBadHelo)
	}
	// go-smtp enforces neither TLS nor AUTH before MAIL (LIBRARY-NOTES);
	// without both, this would be an open relay.
	if !s.tls() {
		return s.fail("mail", errNeedTLS)
	}
	if s.user == nil {
		return s.fail("mail", errNeedAuth)
	}
	if from == "" {
		return s.fail("mail", errNullSender)
	}
	// An account disabled after AUTH on this connection sends no more.
	if u, err := s.b.Identity.Store.UserByID(s.ctx, s.user.ID); err != nil {
		return s.fail("mail", fault(err))
	} else if u.Status != store.StatusActive {
		return s.fail("mail", errDisabled)
	}
	if !bytes.Equal(s.b.Identity.Keys.EmailIndex(from), s.user.EmailIndex) {
		return s.fail("mail", errSenderNotOwned)
	}
	s.from = keys.NormalizeAddr(from)
	if opts != nil {
		s.size = opts.Size
	}
	if err := s.beginTxn(); err != nil {
		return err
	}
	// Inside an authenticated transaction the long read timeout applies.
	s.setPhase(phaseTransaction)
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := s.gone(); err != nil {
		return err
	}
	if !plainAddr(to) {
		return s.fail("rcpt", errRcptForm)
	}
	addr, err := identity.ParseAddr(to)
	if err != nil {
		return s.fail("rcpt", errBadRcpt)
	}
	for _, t := range s.to {
		if t == addr {
			return nil
		}
	}
	// RFC 5321 4.5.3.1.10: 452 asks the client to send the rest later.
	if len(s.to) >= s.b.Opts.MaxRecipients {
		return s.fail("rcpt", errTooManyRcpts)
	}
	if err := s.checkRcptSize(); err != nil {
		return err
	}
	if err := s.b.Intake.CheckRecipient(s.ctx, s.user, s.from, addr); err != nil {
		var rj *intake.Rejected
		if errors.As(err, &rj) {
			return s.fail("rcpt", policyRefusal(rj))
		}
		return s.fail("rcpt", fault(err))
	}
	s.to = append(s.to, addr)
	return nil
}

func (s *session) Data(r io.Reader) error {
	// A refused message gives its hour's reservation back before the reply
	// goes out (go-smtp resets only after it); a no-op once accepted.
	defer s.endTxn(false)
	if err := s.gone(); err != nil {
		return err
	}
	// Start the buffer at the declared SIZE (RFC 1870) or a typical size, so
	// a message is not copied a dozen times while it grows. The trace
	// header (stamped at DATA, as Postfix does) goes in first and the body
	// is read in after it: no second copy of the message to put it in front.
	rcvd := s.received()
	buf := bytes.NewBuffer(make([]byte, 0, int64(len(rcvd))+min(max(s.size, 64<<10), s.b.Opts.MaxMessageBytes)+4096))
	buf.Write(rcvd)
	_, err := buf.ReadFrom(r)
	raw := buf.Bytes()
	body := raw[len(rcvd):]
	if err != nil {
		var se *smtp.SMTPError
		switch {
		case errors.Is(err, smtp.ErrTooLongLine):
			return s.fail("data", errLineTooLong)
		case errors.As(err, &se): // size limit: 552 5.3.4 from go-smtp
			return s.fail("data", refuse(se.Code, se.EnhancedCode, se.Message))
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.drop()
			return s.fail("data", errTimedOut)
		}
		return s.fail("data", fault(err))
	}
	if hasBareNewline(body) {
		return s.fail("data", errBareNewline)
	}
	if add := s.missingHeaders(body); len(add) > 0 {
		raw = append(append(append(make([]byte, 0, len(raw)+len(add)), rcvd...), add...), body...)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 3*time.Minute)
	defer cancel()
	start := time.Now()
	defer func() { s.b.Metrics.SMTPDuration("data", time.Since(start)) }()
	res, err := s.b.Intake.Accept(ctx, intake.Envelope{IP: s.ip, Sender: s.user, From: s.from, To: s.to}, raw)
	var rj *intake.Rejected
	if errors.As(err, &rj) {
		return s.fail("data", policyRefusal(rj))
	}
	if err != nil {
		return s.fail("data", fault(err))
	}
	for action, n := range map[string]int{"portal": res.Portal, "relay": res.Relayed, "pgp": res.PGP, "quarantine": res.Quarantined} {
		for i := 0; i < n; i++ {
			s.b.Metrics.SMTPAccepted(action)
		}
	}
	s.endTxn(true)
	s.txn++
	ref := fmt.Sprintf("%s-%d", s.cid, s.txn)
	s.b.Log.InfoContext(s.ctx, "smtp accepted", "user", s.user.ID, "ip", s.ip, "size", len(raw),
		"portal", res.Portal, "relayed", res.Relayed, "pgp", res.PGP, "quarantined", res.Quarantined,
		"messages", res.MessageIDs, "ref", ref)
	// go-smtp sends a fixed "250 OK: queued" for nil; an SMTPError with code
	// 250 lets the reply carry a reference the client's admin can match
	// against our log, as "queued as" does in other MTAs.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + ref}
}

// received is the trace header RFC 5321 4.4 requires of every relay; it
// names the client by IP only.
func (s *session) received() []byte {
	proto := "ESMTPSA" // RFC 3848: ESMTP + TLS + AUTH
	return []byte(fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (phigate) with %s id %s;\r\n\t%s\r\n",
		s.conn.Hostname(), s.ip, s.b.Opts.Hostname, proto, s.cid, time.Now().UTC().Format(time.RFC1123Z)))
}

// missingHeaders returns a Date and Message-ID for messages that lack them,
// as a submission server may add (RFC 6409 8.2, 8.3); RFC 5322 3.6 requires
// Date, and threading needs Message-ID.
func (s *session) missingHeaders(raw []byte) []byte {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil
	}
	var add []byte
	if !h.Has("Date") {
		add = append(add, "Date: "+time.Now().Format(time.RFC1123Z)+"\r\n"...)
	}
	if !h.Has("Message-Id") {
		add = append(add, "Message-ID: <"+store.NewID()+"@"+s.b.Opts.Hostname+">\r\n"...)
	}
	// RFC 5322 3.6 requires From: the authenticated sender's address.
	if !h.Has("From") {
		add = append(add, "From: <"+s.from+">\r\n"...)
	}
	return add
}

func (s *session) Reset() {
	s.endTxn(false)
	s.from, s.to, s.size = "", nil, 0
	s.setPhase(phaseCommand)
}

func (s *session) Logout() error {
	s.endTxn(false)
	s.b.Log.DebugContext(s.ctx, "smtp disconnect", "ip", s.ip)
	return nil
}

// audit writes a trail entry for this connection: the authenticated user,
// or "smtp:<ip>" before AUTH.
// Before AUTH, entries go through the per-address aggregation (clients).
func (s *session) audit(action, objType, objID, outcome string, details map[string]string) {
	actor := "smtp:" + s.ip
	if s.user != nil {
		actor = s.user.ID
	}
	s.b.record(s.ctx, audit.Entry{Actor: actor, IP: s.ip, Action: action, ObjectType: objType,
		ObjectID: objID, Outcome: outcome, Correlation: s.cid, Details: details}, s.user != nil)
}
