package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/redisconn"
	"github.com/phigate/phigate/internal/redistest"
)

// While Redis is stopped or hung, every Manager call fails with an error
// that is redisconn.ErrUnavailable and neither ErrNoSession nor an
// *EndedError (so nobody is signed out for it), and nothing is ended; when
// Redis is back (restarted with its data, or woken) the same token resumes.
func TestRedisUnavailableIsNotSignedOut(t *testing.T) {
	for _, mode := range []string{"stopped", "hung"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb, guard := redisconn.New(srv.Options(), redisconn.Options{Timeout: 300 * time.Millisecond,
				Probe: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer rdb.Close()
			gctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); guard.Run(gctx) }()
			defer func() { stop(); <-done }()
			var ended []string
			m := &Manager{Store: NewRedis(rdb, testPrefix), Idle: 10 * time.Minute,
				OnEnd: func(_ context.Context, _, id, reason string) { ended = append(ended, reason) }}
			token, rec, err := m.Start(ctx, "user-1", "patient", []byte("private key"), true)
			if err != nil {
				t.Fatal(err)
			}

			if mode == "stopped" {
				if err := srv.Client(t).Save(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				srv.Stop()
			} else {
				srv.Pause(t)
				defer srv.Continue(t)
			}
			calls := map[string]func() error{
				"Resume": func() error { _, _, err := m.Resume(ctx, token); return err },
				"Peek":   func() error { _, err := m.Peek(ctx, token); return err },
				"Rotate": func() error { _, _, err := m.Rotate(ctx, token, "patient", true); return err },
				"End":    func() error { return m.End(ctx, token, ReasonUser) },
				"Start":  func() error { _, _, err := m.Start(ctx, "user-2", "patient", []byte("k"), true); return err },
			}
			for name, call := range calls {
				err := call()
				if !errors.Is(err, redisconn.ErrUnavailable) || errors.Is(err, ErrNoSession) || Reason(err) != "" {
					t.Errorf("%s during the outage: %v; want ErrUnavailable, not 'no session' or 'ended'", name, err)
				}
			}

			if mode == "stopped" {
				srv.Restart(t)
			} else {
				srv.Continue(t)
			}
			deadline := time.Now().Add(30 * time.Second)
			for guard.Down() {
				if time.Now().After(deadline) {
					t.Fatal("Redis still counted as down")
				}
				time.Sleep(20 * time.Millisecond)
			}
			got, priv, err := m.Resume(ctx, token)
			if err != nil || got.ID != rec.ID || string(priv) != "private key" {
				t.Fatalf("after the outage: %v", err)
			}
			if len(ended) != 0 {
				t.Errorf("sessions ended during the outage: %v", ended)
			}
		})
	}
}
