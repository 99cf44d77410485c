package smtpd

import (
	"bytes"
	"log/slog"
	"net"
)

// preTLSAuditListener wraps the STARTTLS port to log AUTH attempts made
// before TLS. go-smtp refuses them itself (523 5.7.10) without calling the
// backend, so without this the refusal would leave no trace. Only the verb
// is looked at; nothing after it is read or logged.
type preTLSAuditListener struct {
	net.Listener
	log *slog.Logger
}

func (l preTLSAuditListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &preTLSAuditConn{Conn: c, log: l.log}, nil
}

type preTLSAuditConn struct {
	net.Conn
	log  *slog.Logger
	line []byte
	done bool // STARTTLS seen: what follows is TLS records
}

func (c *preTLSAuditConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.done && n > 0 {
		c.scan(b[:n])
	}
	return n, err
}

func (c *preTLSAuditConn) scan(b []byte) {
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
			c.done = true
			return
		case bytes.HasPrefix(verb, []byte("AUTH")):
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			c.log.Warn("smtp refused", "stage", "auth", "code", 523, "enhanced", "5.7.10",
				"reason", "AUTH attempted before STARTTLS", "ip", host)
		}
	}
}
