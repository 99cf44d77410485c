package redistest

import (
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Outages for tests of what happens while Redis is gone (issue 9.4).

// Stop stops the server, as a crashed or stopped Redis: connections are
// refused until Restart.
func (s *Server) Stop() { s.stop() }

// Pause freezes the server (SIGSTOP): connections are accepted by the
// kernel but nothing is answered, as with a hung Redis, until Continue.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("redistest: SIGSTOP: %v", err)
	}
}

// Continue wakes a paused server (SIGCONT).
func (s *Server) Continue(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("redistest: SIGCONT: %v", err)
	}
}

// Restart stops the server if it runs and starts a new, empty one on the
// same address, as a Redis restarted without persistence. Clients keep
// their address and reconnect by themselves.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	var lastErr error
	// The port was ours a moment ago; someone else may take it meanwhile,
	// so retry briefly rather than fail at once.
	for attempt := 0; attempt < 10; attempt++ {
		ns, err := start(s.bin, s.dir, s.port)
		if err == nil {
			s.cmd, s.out, s.exited = ns.cmd, ns.out, ns.exited
			return
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr, lastErr)
}

// Options returns client options for the server, for tests that build
// their own client (with their own timeouts or hooks).
func (s *Server) Options() *redis.Options { return s.options() }
