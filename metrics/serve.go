package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// DefaultAddr is the default metrics listener: loopback only.
const DefaultAddr = "127.0.0.1:9464"

// Serve listens on addr and serves m's metrics at GET /metrics, in plain
// HTTP, until ctx ends; it returns the listener (for its address) once
// listening. Every other path is 404.
//
// Metrics carry no PHI and no credentials, but they describe the gateway's
// traffic, so by default Serve refuses any address that is not loopback:
// an empty host or 0.0.0.0/:: (all interfaces), a public or private IP, or
// a name that resolves to any non-loopback address. allowNonLoopback lifts
// that check. Exposing metrics beyond loopback needs a TLS-terminating proxy
// (with client authentication) in front of this listener; the listener
// itself never speaks TLS. WithPprof adds the profiler, on loopback only.
func Serve(ctx context.Context, addr string, allowNonLoopback bool, m *M, opts ...Option) (net.Listener, error) {
	if !m.on() {
		return nil, errors.New("metrics: Serve needs a non-nil *M from New")
	}
	var so serveOptions
	for _, o := range opts {
		o(&so)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen address %q: %w", addr, err)
	}
	listenAddr := addr
	if !allowNonLoopback || so.pprof {
		ip, err := loopbackHost(ctx, host)
		if err != nil && so.pprof {
			return nil, fmt.Errorf("metrics: refusing the profiler (--debug-pprof) on %q: %w (it is served on a loopback metrics address only, whatever metrics.allow_remote says)", addr, err)
		}
		if err != nil {
			return nil, fmt.Errorf("metrics: refusing %q: %w (metrics are served on loopback only; put a TLS-terminating proxy in front to expose them)", addr, err)
		}
		// Listen on the address checked, not on a name resolved again.
		listenAddr = net.JoinHostPort(ip.String(), port)
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	if so.pprof {
		mountPprof(mux)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("metrics listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	return ln, nil
}

// loopbackHost returns the loopback address host names, or an error if host
// is empty, unspecified, not loopback, or resolves to any non-loopback
// address.
func loopbackHost(ctx context.Context, host string) (netip.Addr, error) {
	if host == "" {
		return netip.Addr{}, errors.New("an empty host listens on all interfaces")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if !ip.IsLoopback() {
			return netip.Addr{}, fmt.Errorf("%s is not a loopback address", ip)
		}
		return ip, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("%s has no addresses", host)
	}
	var first netip.Addr
	for _, ip := range ips {
		ip = ip.Unmap()
		if !ip.IsLoopback() {
			return netip.Addr{}, fmt.Errorf("%s resolves to %s, which is not loopback", host, ip)
		}
		if !first.IsValid() || (ip.Is4() && !first.Is4()) {
			first = ip
		}
	}
	return first, nil
}
