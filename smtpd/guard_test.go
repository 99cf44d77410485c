package smtpd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestConnectionCaps: over the per-address cap a connection gets 421 4.7.0
// and is closed, in plain text even on the implicit-TLS port (no handshake
// is spent on it), while other addresses still get in; at the total cap
// (across both listeners) a newcomer takes the slot of the oldest
// connection that has not authenticated; a freed slot can be used again.
func TestConnectionCaps(t *testing.T) {
	lim := testLimits()
	lim.MaxConnsPerIP, lim.MaxConns = 3, 5
	ts := startServer(t, lim)
	greeted := func(c *client) *client {
		t.Helper()
		if r := c.reply(); !strings.HasPrefix(r, "220 ") {
			t.Fatalf("greeting: %s", r)
		}
		return c
	}

	var held []*client
	for i := 0; i < 3; i++ {
		held = append(held, greeted(dial(t, "127.0.0.2", ts.startTLS)))
	}
	for _, addr := range []string{ts.startTLS, ts.implicit} {
		over := dial(t, "127.0.0.2", addr)
		if got, err := over.rest(); got != tooManyConns || err != nil {
			t.Errorf("4th connection from one address to %s: %q, %v; want %q and a close", addr, got, err, tooManyConns)
		}
	}
	greeted(dialTLS(t, "127.0.0.3", ts.implicit))
	greeted(dial(t, "127.0.0.4", ts.startTLS)) // 5: the total cap
	// A sixth address gets in; the oldest connection without AUTH is closed.
	newcomer := greeted(dial(t, "127.0.0.5", ts.startTLS))
	if got, err := held[0].rest(); got != "" || err != nil {
		t.Errorf("oldest connection at the total cap: %q, %v; want it closed", got, err)
	}
	if r := newcomer.cmd("EHLO client.test"); !strings.HasPrefix(r, "250") {
		t.Errorf("newcomer: %s", r)
	}

	// QUIT frees the slot; the address can connect again without evicting.
	if r := held[1].cmd("QUIT"); !strings.HasPrefix(r, "221") {
		t.Fatalf("QUIT: %s", r)
	}
	held[1].conn.Close()
	waitOpen(t, ts.b, 4)
	greeted(dial(t, "127.0.0.2", ts.startTLS))
	if r := held[2].cmd("NOOP"); !strings.HasPrefix(r, "250") {
		t.Errorf("a connection below the cap was closed: %s", r)
	}
}

// TestSlotsKeepAuthenticated: at the total cap, authenticated connections
// are never evicted; with nothing else to evict, the newcomer is refused.
func TestSlotsKeepAuthenticated(t *testing.T) {
	s := &connSlots{max: 2, perIP: map[string]int{}}
	a, b, c := &guardConn{key: "a"}, &guardConn{key: "b"}, &guardConn{key: "c"}
	s.take(a)
	s.take(b)
	s.authenticated(a)
	if ok, victim := s.take(c); !ok || victim != b {
		t.Fatalf("take at the cap: %v, %v; want b evicted", ok, victim)
	}
	s.authenticated(c)
	if ok, victim := s.take(&guardConn{key: "d"}); ok || victim != nil {
		t.Errorf("take with only authenticated connections: %v, %v; want a refusal", ok, victim)
	}
	s.release(b) // already released by the eviction: no effect
	s.release(a)
	if s.open != 1 || s.perIP["a"] != 0 || s.perIP["c"] != 1 {
		t.Errorf("after releases: open %d, per address %v", s.open, s.perIP)
	}
}

// TestTimeouts: each phase has its own read timeout; the long ReadTimeout
// (an hour here) applies only inside an authenticated transaction, so each
// subtest ends only because the short timeout under test fired.
func TestTimeouts(t *testing.T) {
	const short = 150 * time.Millisecond
	t.Run("first command", func(t *testing.T) {
		lim := testLimits()
		lim.HandshakeTimeout = short
		ts := startServer(t, lim)
		c := dial(t, "127.0.0.1", ts.startTLS)
		c.reply()
		got, err := c.rest()
		if !strings.HasPrefix(got, "421 4.4.2") || err != nil {
			t.Errorf("idle before the first command: %q, %v", got, err)
		}
	})
	t.Run("implicit TLS handshake", func(t *testing.T) {
		lim := testLimits()
		lim.HandshakeTimeout = short
		ts := startServer(t, lim)
		c := dial(t, "127.0.0.1", ts.implicit)
		// No ClientHello: the server gives up and closes.
		if got, err := c.rest(); got != "" || err != nil {
			t.Errorf("silent TLS client: %q, %v", got, err)
		}
		waitOpen(t, ts.b, 0)
	})
	t.Run("STARTTLS handshake", func(t *testing.T) {
		lim := testLimits()
		lim.HandshakeTimeout = short
		ts := startServer(t, lim)
		c := dial(t, "127.0.0.1", ts.startTLS)
		c.reply()
		c.send("EHLO client.test\r\n") // the first command arrives at once
		c.reply()
		if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "220") {
			t.Fatalf("STARTTLS: %s", r)
		}
		// No ClientHello after 220: closed by the handshake timeout (the
		// command timeout is an hour).
		if got, err := c.rest(); !strings.HasPrefix(got, "550") && got != "" || err != nil {
			t.Errorf("silent after STARTTLS: %q, %v", got, err)
		}
		waitOpen(t, ts.b, 0)
	})
	t.Run("between commands", func(t *testing.T) {
		lim := testLimits()
		lim.CommandTimeout = short
		ts := startServer(t, lim)
		c := dialTLS(t, "127.0.0.1", ts.implicit)
		c.reply()
		if r := c.cmd("EHLO client.test"); !strings.HasPrefix(r, "250") {
			t.Fatalf("EHLO: %s", r)
		}
		got, err := c.rest()
		if !strings.HasPrefix(got, "421 4.4.2") || err != nil {
			t.Errorf("idle after EHLO: %q, %v", got, err)
		}
	})
}

// TestPartialLineNeverExecuted: a command line without its CRLF when the
// read timeout fires is not executed, and the connection closes at once
// instead of living another timeout. go-smtp alone would run "MAIL
// FROM:<x>" (answering 530 here, as MAIL needs TLS and AUTH) and then wait
// a whole new timeout; the only reply must be the 421.
func TestPartialLineNeverExecuted(t *testing.T) {
	lim := testLimits()
	lim.CommandTimeout = 200 * time.Millisecond
	ts := startServer(t, lim)
	for _, tc := range []struct {
		name string
		dial func() *client
	}{
		{"plain text", func() *client { c := dial(t, "127.0.0.1", ts.startTLS); c.reply(); return c }},
		{"TLS", func() *client { c := dialTLS(t, "127.0.0.1", ts.implicit); c.reply(); return c }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial()
			if r := c.cmd("EHLO client.test"); !strings.HasPrefix(r, "250") {
				t.Fatalf("EHLO: %s", r)
			}
			c.send("MAIL FROM:<x@clinic.test>")
			got, err := c.rest()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			lines := strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "421 4.4.2") {
				t.Errorf("replies after an unterminated MAIL: %q; want one 421 4.4.2 and the close", got)
			}
		})
	}
	if strings.Contains(ts.logs.String(), "stage=mail") {
		t.Errorf("MAIL reached the session:\n%s", ts.logs.String())
	}
}

// TestOverlongLine: a command line over the limit gets its 500 and the
// rest of the line is read and discarded, so the client reads the reply
// and an orderly close instead of a reset.
func TestOverlongLine(t *testing.T) {
	ts := startServer(t, testLimits())
	for _, tc := range []struct {
		name string
		dial func() *client
	}{
		{"plain text", func() *client { c := dial(t, "127.0.0.1", ts.startTLS); c.reply(); return c }},
		{"TLS", func() *client { c := dialTLS(t, "127.0.0.1", ts.implicit); c.reply(); return c }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial()
			c.cmd("EHLO client.test")
			// Far more than the server reads before it refuses the line,
			// within what it drains (MaxMessageBytes, 1 MiB here).
			line := "NOOP " + strings.Repeat("x", 600<<10) + "\r\n"
			done := make(chan error, 1)
			go func() { _, err := c.conn.Write([]byte(line)); done <- err }()
			got, err := c.rest()
			if werr := <-done; werr != nil {
				t.Errorf("writing the line: %v", werr)
			}
			if err != nil || !strings.HasPrefix(got, "500 ") {
				t.Errorf("over-long line: %q, %v (reset: %v); want 500 and a close", got, err, isReset(err))
			}
		})
	}
}

// TestHeloValidated: the EHLO/HELO argument must be a domain or an address
// literal (RFC 5321 4.1.1.1); garbage gets 501 and no session.
func TestHeloValidated(t *testing.T) {
	ts := startServer(t, testLimits())
	for arg, want := range map[string]string{
		"client.example":        "250",
		"localhost":             "250",
		"[192.0.2.1]":           "250",
		"[IPv6:2001:db8::1]":    "250",
		"DESKTOP_1.lan":         "250",
		"-bad.example":          "501 5.5.2",
		"a..example":            "501 5.5.2",
		"<script>":              "501 5.5.2",
		"[300.1.1.1]":           "501 5.5.2",
		"[2001:db8::1]":         "501 5.5.2",
		"x.example.":            "501 5.5.2",
		strings.Repeat("a", 64): "501 5.5.2",
	} {
		c := dial(t, "127.0.0.1", ts.startTLS)
		c.reply()
		if r := c.cmd("EHLO " + arg); !strings.HasPrefix(r, want) {
			t.Errorf("EHLO %s: %s, want %s", arg, r, want)
		}
		c.cmd("QUIT")
	}
}

// TestFlood: hundreds of idle connections from one address beyond its cap
// don't keep another address out.
func TestFlood(t *testing.T) {
	lim := testLimits()
	lim.MaxConnsPerIP = 10
	ts := startServer(t, lim)
	refused := 0
	for i := 0; i < 300; i++ {
		c := dial(t, fmt.Sprintf("127.0.0.%d", 10+i%2), ts.startTLS)
		if r := c.reply(); strings.HasPrefix(r, "421") {
			refused++
			c.conn.Close()
		}
	}
	if refused != 280 {
		t.Errorf("%d of 300 refused, want 280", refused)
	}
	c := dial(t, "127.0.0.1", ts.startTLS)
	if r := c.reply(); !strings.HasPrefix(r, "220") {
		t.Fatalf("legitimate client during the flood: %s", r)
	}
	if r := c.cmd("EHLO client.test"); !strings.HasPrefix(r, "250") {
		t.Errorf("EHLO during the flood: %s", r)
	}
	c.startTLS()
	if r := c.cmd("EHLO client.test"); !strings.HasPrefix(r, "250") {
		t.Errorf("EHLO after STARTTLS during the flood: %s", r)
	}
}
