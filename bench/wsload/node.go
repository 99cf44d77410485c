package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/store"
)

// nodeReady is what a node process prints on stdout once it serves.
type nodeReady struct {
	PID         int    `json:"pid"`
	SMTP        string `json:"smtp"`
	HTTPS       string `json:"https"`
	AppPassword string `json:"app_password,omitempty"`
}

const (
	benchStaff = "dr.bench@clinic.example"
	benchPW    = "quiet maple harbour lantern 81"
)

func patientAddr(i int) string { return fmt.Sprintf("p%05d@bench.example", i) }

// runNode runs one gateway node (a child process of the load generator) on
// the shared data folder and Redis until stdin closes. The first node
// creates the accounts.
func runNode(data, redisURL string, users int, redisTimeout time.Duration) error {
	cfg := e2e.Config(data)
	cfg.Redis.URL = redisURL
	if redisTimeout > 0 {
		cfg.Redis.Timeout.Duration = redisTimeout
	}
	cfg.Redis.Prefix = "wsload:"
	cfg.Log.Level = "warn"
	cfg.Metrics.Addr = ""
	cfg.Session.IdleTimeout.Duration = 30 * time.Minute // the run must not sign anyone out
	cfg.Portal.MaxConns = 1 << 20                       // lowered to fit the descriptor limit
	cfg.Portal.MaxConnsPerIP = 1024
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := logx.New(os.Stderr, "text", "warn")
	slog.SetDefault(log)
	ctx := context.Background()
	g, err := gateway.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	defer g.Close()
	ready := nodeReady{PID: os.Getpid()}
	ready.SMTP, _, ready.HTTPS = g.Addrs()
	if users > 0 {
		if _, err := g.Identity.AddUser(ctx, benchStaff, store.RoleStaff, benchPW); err != nil {
			return err
		}
		if ready.AppPassword, err = g.Identity.AddAppPassword(ctx, benchStaff, "wsload"); err != nil {
			return err
		}
		for i := 0; i < users; i++ {
			if _, err := g.Identity.AddUser(ctx, patientAddr(i), store.RolePatient, benchPW); err != nil {
				return fmt.Errorf("account %d: %w", i, err)
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(ready); err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-stop:
	case <-eof:
	}
	return nil
}
