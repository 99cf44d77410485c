package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/phigate/phigate/bench/procstat"
)

func TestLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:8443": true, "[::1]:8443": true, "localhost:8443": true,
		"10.0.0.1:443": false, "portal.clinic.example:443": false, "127.0.0.1": false} {
		if err := loopbackOnly(addr); (err == nil) != ok {
			t.Errorf("loopbackOnly(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

func TestSample(t *testing.T) {
	p := procstat.Read(os.Getpid())
	if !p.OK || p.RSSKiB <= 0 || p.FDs <= 0 {
		t.Fatalf("sample of this process: %+v", p)
	}
	if procstat.Read(0).OK {
		t.Error("procstat.Read(0) claims a measurement")
	}
}

// TestSlowClientHeldThenDropped: a client opened by open and kept by
// trickle is held by a server until its header timeout, then dropped.
func TestSlowClientHeldThenDropped(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ReadHeaderTimeout = 300 * time.Millisecond
	srv.StartTLS()
	defer srv.Close()
	conn, err := open(srv.Listener.Addr().String(), []byte{127, 0, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { trickle(conn, 20*time.Millisecond, make(chan struct{})); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a bound for a broken build, not a timing assertion
		t.Fatal("the server never dropped the slow client")
	}
}
