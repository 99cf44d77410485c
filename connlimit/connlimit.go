// Package connlimit caps the connections a listener holds, in all and per
// remote address, so that a flood of idle or slow clients (slowloris) can
// neither exhaust the process's file descriptors nor crowd out clients
// from other addresses.
package connlimit

import (
	"net"
	"sync"
	"sync/atomic"
)

// Options bound one listener.
type Options struct {
	// Max is how many accepted connections may be open at once, in all;
	// 0 means no total cap (use FitFDLimit to derive one).
	Max int
	// MaxPerIP is how many may be open at once from one remote address;
	// 0 means no per-address cap (behind a proxy every client shares one).
	MaxPerIP int
	// OnRefuse, if set, is told of each connection closed for being over a
	// cap (reason is "total" or "per-ip"); it runs on the accept loop, so it
	// must be quick.
	OnRefuse func(reason string)
}

// Listener is a net.Listener that closes connections over its caps as soon
// as they are accepted, before any byte is read or a TLS handshake is done,
// so a refused connection costs one accept and one close.
type Listener struct {
	net.Listener
	opts Options

	mu    sync.Mutex
	open  int
	perIP map[string]int

	refused atomic.Int64
}

// Wrap caps ln per o.
func Wrap(ln net.Listener, o Options) *Listener {
	return &Listener{Listener: ln, opts: o, perIP: map[string]int{}}
}

// Accept returns the next connection within the caps; connections over a
// cap are closed here and never reach the server.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr())
		if reason := l.admit(ip); reason != "" {
			// Counted and told before the close, so whoever sees the
			// close also sees the count.
			l.refused.Add(1)
			if l.opts.OnRefuse != nil {
				l.opts.OnRefuse(reason)
			}
			c.Close()
			continue
		}
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

// admit counts a new connection from ip, or says which cap it is over.
func (l *Listener) admit(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.Max > 0 && l.open >= l.opts.Max {
		return "total"
	}
	if l.opts.MaxPerIP > 0 && l.perIP[ip] >= l.opts.MaxPerIP {
		return "per-ip"
	}
	l.open++
	l.perIP[ip]++
	return ""
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// Open is the number of accepted connections not yet closed.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Refused is the number of connections closed for being over a cap.
func (l *Listener) Refused() int64 { return l.refused.Load() }

// conn gives its slot back once, however often it is closed.
type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
