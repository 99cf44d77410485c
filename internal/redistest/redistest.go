// Package redistest gives tests a private, throw-away redis-server, so tests
// that claim Redis behaviour run against the real thing and never touch the
// machine's own Redis (or each other's data).
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Server is one private redis-server process, listening on a loopback port,
// with no persistence, living in a test's temporary directory.
type Server struct {
	Addr   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}

	bin, dir string // for Restart
	port     int
}

// Client starts a private redis-server for this test and returns a client
// for it. Server and client are stopped when the test ends.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	return Start(t).Client(t)
}

// Start starts a private redis-server for this test, stopped in t.Cleanup.
// Use it when a test needs several clients on one Redis (several "nodes").
// Without redis-server installed the test is skipped, or fails when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (CI must install it: see .ci/run)")
		}
		t.Skip("redis-server is not installed; skipping the Redis run")
	}
	dir := t.TempDir()
	var lastErr error
	// A port found free can be taken by someone else before redis-server
	// binds it: try a few.
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s, err := start(bin, dir, port)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(bin, dir string, port int) (*Server, error) {
	out := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--protected-mode", "yes", "--loglevel", "warning")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), cmd: cmd, out: out, exited: make(chan struct{}),
		bin: bin, dir: dir, port: port}
	go func() { _ = cmd.Wait(); close(s.exited) }()

	c := redis.NewClient(s.options())
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			// Make sure the server answering is ours, not one that took
			// the port first.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			d, derr := c.ConfigGet(ctx, "dir").Result()
			cancel()
			if derr == nil && sameDir(d["dir"], dir) {
				return s, nil
			}
			s.stop()
			return nil, fmt.Errorf("another server answered on %s (dir %q, %v)", s.Addr, d["dir"], derr)
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("redis-server exited: %s", strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-s.exited
			return nil, fmt.Errorf("redis-server did not answer PING: %v; %s", err, strings.TrimSpace(out.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) options() *redis.Options {
	return &redis.Options{
		Addr: s.Addr,
		// Redis 7.0 knows nothing of maintenance notifications.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DisableIdentity:          true,
	}
}

// Client returns a new client (its own connection pool: another "node")
// for the server, closed when the test ends.
func (s *Server) Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(s.options())
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must wake to exit
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
