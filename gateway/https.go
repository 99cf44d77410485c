package gateway

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
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
		ErrorLog:       slog.NewLogLogger(g.Log.Handler(), slog.LevelWarn)}
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
// cap, at most once a minute (a flood must not flood the log too), with the
// counts since the previous line. No addresses: one line covers many.
type overCapLog struct {
	log        *slog.Logger
	max, perIP int

	mu                sync.Mutex
	last              time.Time
	overTotal, overIP int
}

func (o *overCapLog) note(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if reason == "total" {
		o.overTotal++
	} else {
		o.overIP++
	}
	if time.Since(o.last) < time.Minute {
		return
	}
	o.log.Warn("portal connections closed over a cap", "over_max_conns", o.overTotal, "over_max_conns_per_ip", o.overIP,
		"max_conns", o.max, "max_conns_per_ip", o.perIP)
	o.last, o.overTotal, o.overIP = time.Now(), 0, 0
}
