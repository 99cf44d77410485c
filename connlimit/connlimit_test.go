package connlimit

import (
	"bufio"
	"net"
	"sync"
	"testing"
	"time"
)

// serve accepts on a capped loopback listener and greets every connection
// it admits with "ok\n", keeping it open until the test ends.
func serve(t *testing.T, o Options) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{Listener: Wrap(ln, o)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.held = append(s.held, c)
			s.mu.Unlock()
			c.Write([]byte("ok\n")) // after recording it: the client may act on it at once
		}
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
		for _, c := range s.heldFrom("") {
			c.Close()
		}
	})
	return s
}

type testServer struct {
	*Listener
	mu   sync.Mutex
	held []net.Conn // server side of admitted connections
}

// heldFrom returns the server side of the admitted connections from ip
// ("" for all).
func (s *testServer) heldFrom(ip string) []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Conn
	for _, c := range s.held {
		if ip == "" || hostOf(c.RemoteAddr()) == ip {
			out = append(out, c)
		}
	}
	return out
}

// dial connects from the local address from (127.0.0.x) and reports
// whether the server admitted the connection (greeted it) or closed it.
func dial(t *testing.T, addr, from string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return c, err == nil && line == "ok\n"
}

func TestCaps(t *testing.T) {
	var refusedTotal, refusedIP int
	var mu sync.Mutex
	l := serve(t, Options{Max: 5, MaxPerIP: 3, OnRefuse: func(reason string) {
		mu.Lock()
		defer mu.Unlock()
		if reason == "total" {
			refusedTotal++
		} else {
			refusedIP++
		}
	}})
	addr := l.Addr().String()

	// Three from one address are admitted, the fourth is closed.
	var first net.Conn
	for i := range 3 {
		c, ok := dial(t, addr, "127.0.0.2")
		if !ok {
			t.Fatalf("connection %d from 127.0.0.2 refused below the per-address cap", i)
		}
		if i == 0 {
			first = c
		}
	}
	if _, ok := dial(t, addr, "127.0.0.2"); ok {
		t.Fatal("a fourth connection from 127.0.0.2 was admitted over the per-address cap of 3")
	}
	// Another address still gets in, up to the total of 5.
	for i := range 2 {
		if _, ok := dial(t, addr, "127.0.0.3"); !ok {
			t.Fatalf("connection %d from 127.0.0.3 refused below the caps", i)
		}
	}
	if _, ok := dial(t, addr, "127.0.0.4"); ok {
		t.Fatal("a sixth connection was admitted over the total cap of 5")
	}
	if l.Open() != 5 || l.Refused() != 2 {
		t.Fatalf("open %d refused %d, want 5 and 2", l.Open(), l.Refused())
	}
	mu.Lock()
	if refusedTotal != 1 || refusedIP != 1 {
		t.Errorf("OnRefuse heard total=%d per-ip=%d, want 1 and 1", refusedTotal, refusedIP)
	}
	mu.Unlock()

	// A closed connection gives its slot back (the server notices the
	// client's close only when it closes its side: close both).
	first.Close()
	for _, c := range l.heldFrom("127.0.0.2")[:1] {
		c.Close()
	}
	if _, ok := dial(t, addr, "127.0.0.4"); !ok {
		t.Fatal("no connection admitted after one was closed")
	}
}

func TestCloseTwiceReleasesOnce(t *testing.T) {
	l := serve(t, Options{Max: 2})
	if _, ok := dial(t, l.Addr().String(), "127.0.0.1"); !ok {
		t.Fatal("the only connection was refused")
	}
	for _, c := range l.heldFrom("127.0.0.1") {
		c.Close()
		c.Close()
	}
	if got := l.Open(); got != 0 {
		t.Fatalf("open %d after closing the only connection twice, want 0", got)
	}
}

func TestFit(t *testing.T) {
	for _, c := range []struct{ max, reserve, limit, want int }{
		{4096, 256, 20000, 4096},
		{4096, 256, 1024, 768},
		{0, 256, 1024, 768},
		{100, 256, 0, 100}, // unknown limit
	} {
		got, lowered := fit(c.max, c.reserve, c.limit)
		if got != c.want || lowered != (got != c.max) {
			t.Errorf("fit(%d, %d, %d) = %d, %v; want %d", c.max, c.reserve, c.limit, got, lowered, c.want)
		}
	}
}
