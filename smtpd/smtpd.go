// Package smtpd is the submission intake: STARTTLS (or implicit TLS), AUTH
// with app passwords, MAIL/RCPT checks, and DATA handed to intake. Every
// refusal is logged with its code and the client's address, never content.
package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
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
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	TLS             *tls.Config
}

// Server is the go-smtp backend.
type Server struct {
	Intake   *intake.Intake
	Identity *identity.Service
	Log      *slog.Logger
	Metrics  *metrics.M // may be nil
	Audit    audit.Recorder
	Opts     Options
}

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
	s.ErrorLog = slogPrinter{b.Log}
	return s
}

// WrapListener prepares ln for the implicit-TLS port (RFC 8314) or for the
// STARTTLS port (implicit=false).
func (b *Server) WrapListener(ln net.Listener, implicit bool) net.Listener {
	if implicit {
		return tls.NewListener(ln, b.Opts.TLS)
	}
	return preTLSAuditListener{ln, b.Log}
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...interface{}) {
	p.l.Warn("smtp", "msg", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...interface{}) { p.l.Warn("smtp", "msg", fmt.Sprint(v...)) }

func (b *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{b: b, conn: c, cid: logx.NewCorrelationID(), ip: remoteIP(c.Conn())}
	s.ctx = logx.WithCorrelation(context.Background(), s.cid)
	b.Log.InfoContext(s.ctx, "smtp connect", "ip", s.ip)
	s.audit("smtp.connect", "connection", s.cid, "ok", nil)
	return s, nil
}

func remoteIP(c net.Conn) string {
	if c == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

type session struct {
	b    *Server
	conn *smtp.Conn
	cid  string
	ctx  context.Context
	ip   string

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
		s.b.Log.ErrorContext(s.ctx, "smtp fault", append(attrs, "err", e.Cause)...)
	} else {
		s.b.Log.WarnContext(s.ctx, "smtp refused", append(attrs, "reason", e.Message)...)
	}
	return e.reply(s.cid)
}

func (s *session) tls() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(authz, username, password string) error {
		if authz != "" && !strings.EqualFold(authz, username) {
			return s.fail("auth", errAuthzMismatch)
		}
		u, err := s.b.Identity.CheckAppPassword(s.ctx, username, password)
		if errors.Is(err, identity.ErrBadCredentials) {
			s.b.Log.WarnContext(s.ctx, "smtp auth failed", "ip", s.ip, "username", logx.Addr(username), "mech", mech)
			s.audit("smtp.auth", "connection", s.cid, "failed", map[string]string{"username": username, "mech": mech})
			return s.fail("auth", errAuthFailed)
		}
		if err != nil {
			return s.fail("auth", fault(err))
		}
		s.user = u
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

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
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
	return s.beginTxn()
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
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
	// Start the buffer at the declared SIZE (RFC 1870) or a typical size, so
	// a message is not copied a dozen times while it grows.
	buf := bytes.NewBuffer(make([]byte, 0, min(max(s.size, 64<<10), s.b.Opts.MaxMessageBytes)+4096))
	_, err := buf.ReadFrom(r)
	raw := buf.Bytes()
	if err != nil {
		var se *smtp.SMTPError
		switch {
		case errors.Is(err, smtp.ErrTooLongLine):
			return s.fail("data", errLineTooLong)
		case errors.As(err, &se): // size limit: 552 5.3.4 from go-smtp
			return s.fail("data", refuse(se.Code, se.EnhancedCode, se.Message))
		}
		return s.fail("data", fault(err))
	}
	raw = append(s.received(), append(s.missingHeaders(raw), raw...)...)
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
		add = append(add, "Message-ID: <"+identity.NewID()+"@"+s.b.Opts.Hostname+">\r\n"...)
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
}

func (s *session) Logout() error {
	s.endTxn(false)
	s.b.Log.DebugContext(s.ctx, "smtp disconnect", "ip", s.ip)
	return nil
}

// audit writes a trail entry for this connection: the authenticated user,
// or "smtp:<ip>" before AUTH.
func (s *session) audit(action, objType, objID, outcome string, details map[string]string) {
	if s.b.Audit == nil {
		return
	}
	actor := "smtp:" + s.ip
	if s.user != nil {
		actor = s.user.ID
	}
	if err := s.b.Audit.Record(s.ctx, audit.Entry{Actor: actor, IP: s.ip, Action: action, ObjectType: objType,
		ObjectID: objID, Outcome: outcome, Correlation: s.cid, Details: details}); err != nil {
		s.b.Log.ErrorContext(s.ctx, "audit write failed", "action", action, "err", err)
	}
}
