package gateway_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
)

// slowClient connects to addr from the loopback address from, completes
// the TLS handshake and sends the start of a request whose headers it
// never finishes (slowloris). ok is false if the gateway closed the
// connection before the handshake completed.
func slowClient(t *testing.T, addr, from string) (conn *tls.Conn, ok bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", from, err)
	}
	t.Cleanup(func() { raw.Close() })
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, false
	}
	if _, err := io.WriteString(c, "GET /login HTTP/1.1\r\nHost: portal\r\nX-Slow: "); err != nil {
		return nil, false
	}
	return c, true
}

// TestSlowClientsCapped: 200 slowloris clients from one address hold only
// max_conns_per_ip connections (the rest are closed at once), 200 more from
// four other addresses are all held, and a legitimate user from yet another
// address is served meanwhile; past max_conns in all, connections are
// closed whatever their address.
func TestSlowClientsCapped(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Portal.MaxConnsPerIP = 50
	cfg.Portal.MaxConns = 260
	cfg.Portal.ReadHeaderTimeout.Duration = 10 * time.Minute // they hold on for the whole test
	h := e2e.Start(t, cfg)

	flood := func(from string, n int) (held int) {
		for range n {
			if _, ok := slowClient(t, h.HTTPS, from); ok {
				held++
			}
		}
		return held
	}
	if held := flood("127.0.0.2", 200); held != cfg.Portal.MaxConnsPerIP {
		t.Fatalf("%d slow connections from one address held, want exactly max_conns_per_ip=%d (the other %d closed)",
			held, cfg.Portal.MaxConnsPerIP, 200-cfg.Portal.MaxConnsPerIP)
	}
	for _, from := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		if held := flood(from, 50); held != 50 {
			t.Fatalf("%d of 50 slow connections from %s held under the caps, want all", held, from)
		}
	}
	st, _, b := h.Client().Do("GET", "/login", nil, nil)
	if st != 200 || !strings.Contains(string(b), "password") {
		t.Fatalf("a legitimate user during the flood: %d", st)
	}
	// Headers are bounded too.
	big := strings.Repeat("a", 2*cfg.Portal.MaxHeaderBytes)
	if st, _, _ := h.Client().Do("GET", "/login", nil, map[string]string{"X-Big": big}); st != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers of %d bytes: %d, want 431", len(big), st)
	}
	// 250 slow ones held: at most ten more fit under max_conns=260 in all
	// (eight, if the two legitimate requests' connections are not yet
	// closed on the server's side), the rest are closed.
	if held := flood("127.0.0.7", 20); held > 10 || held < 8 {
		t.Errorf("%d of 20 slow connections held with 250 open and max_conns=260, want 8 to 10", held)
	}
	// The operator is told, once, without addresses.
	logs := h.Logs.String()
	if n := strings.Count(logs, "portal connections closed over a cap"); n != 1 || strings.Contains(logs, "127.0.0.2") {
		t.Errorf("%d over-cap log lines (want 1, without the address):\n%s", n, logs)
	}
}

// TestSlowHeadersClosed: a client that trickles its headers, or that never
// starts the TLS handshake, is closed once read_header_timeout has passed,
// however it trickles; it never gets an answer.
func TestSlowHeadersClosed(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Portal.ReadHeaderTimeout.Duration = 300 * time.Millisecond
	h := e2e.Start(t, cfg)

	t.Run("trickled headers", func(t *testing.T) {
		c, ok := slowClient(t, h.HTTPS, "127.0.0.1")
		if !ok {
			t.Fatal("the slow client was refused before it began")
		}
		got := make(chan string, 1)
		go func() { b, _ := io.ReadAll(c); got <- string(b) }()
		give := time.NewTimer(30 * time.Second) // a bound for a broken build, not a timing assertion
		defer give.Stop()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case answer := <-got:
				if answer != "" {
					t.Errorf("the slow client got an answer: %.200q", answer)
				}
				return
			case <-tick.C:
				c.Write([]byte("a")) // one more header byte, never the end
			case <-give.C:
				t.Fatal("a client trickling its headers was never closed")
			}
		}
	})
	t.Run("no handshake", func(t *testing.T) {
		for i := range 3 {
			raw, err := net.Dial("tcp", h.HTTPS)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if i == 2 {
				io.WriteString(raw, "GET / HTTP/1.1\r\nHost: portal\r\n\r\n") // plain HTTP: fails at once
			}
			raw.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadAll(raw); isTimeout(err) {
				t.Fatalf("a client that never starts TLS: %v; want the gateway to close it", err)
			}
		}
		// Each failed handshake could write a log line: they are counted
		// instead, one line a minute, without addresses.
		logs := h.Logs.String()
		if n := strings.Count(logs, "portal TLS handshakes failed"); n != 1 || strings.Contains(logs, "TLS handshake error from") {
			t.Errorf("%d handshake-failure lines (want 1, without addresses):\n%s", n, logs)
		}
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
