package gateway_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/redistest"
)

// redis.password_file: a Redis with requirepass on, its password given as a
// file (a container secret), not in the URL.
func TestRedisPasswordFile(t *testing.T) {
	srv := redistest.Start(t)
	const pw = "redis secret from a file"
	if err := srv.Client(t).ConfigSet(context.Background(), "requirepass", pw).Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "redis_password")
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(filepath.Join(dir, "data"))
	cfg.Redis.URL = "redis://" + srv.Addr + "/0"
	cfg.Redis.PasswordFile = pwFile
	h := e2e.Start(t, cfg)
	if err := h.G.Redis.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping with the file's password: %v", err)
	}
	// Without the file the same Redis refuses: the password was needed.
	cfg2 := nodeConfig(filepath.Join(dir, "data2"))
	cfg2.Redis.URL = cfg.Redis.URL
	cfg2.Fill()
	g, err := gateway.Open(context.Background(), cfg2, h.G.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "redis.url") {
		t.Errorf("start without the password: %v, want a redis.url error", err)
	}
}

func TestRedisCAFileNeedsTLS(t *testing.T) {
	cfg := nodeConfig(t.TempDir())
	cfg.Redis.URL = "redis://127.0.0.1:1/0"
	cfg.Redis.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	cfg.Fill()
	g, err := gateway.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "rediss://") {
		t.Errorf("ca_file with redis://: %v", err)
	}
}
