package gateway

import (
	"crypto/tls"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/connlimit"
)

// httpsServer is the portal's server, bounded against slow and idle
// clients: a client must send its headers within read_header_timeout
// (which also bounds the TLS handshake), its whole request within
// read_timeout, and an idle keep-alive connection is closed after
// conn_idle_timeout (docs/configuration.md, [portal]).
func (g *Gateway) httpsServer(h http.Handler, tlsCfg *tls.Config) *http.Server {
	p := g.Cfg.Portal
	return &http.Server{Handler: h, TLSConfig: tlsCfg.Clone(),
		ReadHeaderTimeout: p.ReadHeaderTimeout.Duration, ReadTimeout: p.ReadTimeout.Duration,
		WriteTimeout: p.WriteTimeout.Duration, IdleTimeout: p.ConnIdleTimeout.Duration,
		MaxHeaderBytes: p.MaxHeaderBytes,
		ErrorLog:       log.New(&serverErrorLog{log: g.Log}, "", 0)}
}

// capHTTPS caps the portal's connections in all and per client address;
// connections over a cap are closed at accept, before the TLS handshake.
// The total stays within half the process's file descriptors (the rest is
// for SMTP, the database and outbound connections).
func (g *Gateway) capHTTPS(ln net.Listener) net.Listener {
	p := g.Cfg.Portal
	max, lowered := connlimit.FitFDLimit(p.MaxConns, connlimit.FDLimit()/2)
	if lowered {
		g.Log.Warn("portal.max_conns lowered to fit the file-descriptor limit", "configured", p.MaxConns,
			"used", max, "fd_limit", connlimit.FDLimit())
	}
	over := &overCapLog{log: g.Log, max: max, perIP: p.MaxConnsPerIP}
	return connlimit.Wrap(ln, connlimit.Options{Max: max, MaxPerIP: p.MaxConnsPerIP, OnRefuse: over.note})
}

// overCapLog tells the operator that connections are being closed over a
// cap, with the counts since the previous line. No addresses: one line
// covers many.
type overCapLog struct {
	log        *slog.Logger
	max, perIP int
	every      minuteCounts
}

func (o *overCapLog) note(reason string) {
	if n, due := o.every.add(reason); due {
		o.log.Warn("portal connections closed over a cap", "over_max_conns", n["total"], "over_max_conns_per_ip", n["per-ip"],
			"max_conns", o.max, "max_conns_per_ip", o.perIP)
	}
}

// serverErrorLog is the HTTPS server's error log. Any client can make it
// write one "TLS handshake error" line per connection (a stalled or garbled
// handshake); those are counted by reason, without the client's address,
// and logged at most once a minute. Other lines pass through as warnings.
type serverErrorLog struct {
	log   *slog.Logger
	every minuteCounts
}

func (e *serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if !strings.HasPrefix(msg, "http: TLS handshake error") {
		e.log.Warn(msg)
		return len(p), nil
	}
	// "http: TLS handshake error from ADDR: REASON": keep the reason only.
	reason := msg[strings.LastIndex(msg, ": ")+2:]
	if n, due := e.every.add(reason); due {
		e.log.Warn("portal TLS handshakes failed", "by_reason", n)
	}
	return len(p), nil
}

// maxKinds bounds the distinct kinds one minute's line counts.
const maxKinds = 16

// minuteCounts counts events by kind for a log line due at most once a
// minute: a flood must not flood the log too.
type minuteCounts struct {
	mu     sync.Mutex
	last   time.Time
	counts map[string]int
}

// add counts one event; when a line is due it returns the counts since
// the previous one, and starts again.
func (m *minuteCounts) add(kind string) (map[string]int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[string]int{}
	}
	if _, seen := m.counts[kind]; !seen && len(m.counts) >= maxKinds {
		kind = "other" // kinds a client can vary stay bounded
	}
	m.counts[kind]++
	if time.Since(m.last) < time.Minute {
		return nil, false
	}
	n := m.counts
	m.last, m.counts = time.Now(), map[string]int{}
	return n, true
}
