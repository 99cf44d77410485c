package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/store"
)

// BenchmarkBackupRestore fills a store through intake (PHIGATE_BENCH_MESSAGES
// messages, default 10,000, of 20 KB to 50 recipients; not timed), then
// times one backup of it while the gateway runs and one restore into an
// empty folder. Run with -benchtime 1x (docs/perf.md).
func BenchmarkBackupRestore(b *testing.B) {
	n := 10000
	if s := os.Getenv("PHIGATE_BENCH_MESSAGES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	cfg := e2e.Config(b.TempDir())
	cfg.SMTP.Senders.MessagesPerHour, cfg.SMTP.Senders.ConcurrentTxns, cfg.SMTP.Senders.MaxStoredBytes = 0, 0, 0
	cfg.Backup.Interval.Duration = 0
	h := e2e.Start(b, cfg)
	h.AddStaff(staff)
	ctx := context.Background()
	sender, err := h.G.Identity.UserByEmail(ctx, staff)
	if err != nil {
		b.Fatal(err)
	}
	raw := benchMessage(20 << 10)
	fill := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				rcpt := fmt.Sprintf("bench%d@example.net", i%50)
				if _, err := h.G.Intake.Accept(ctx, intake.Envelope{Sender: sender, From: staff, To: []string{rcpt}}, raw); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("filled %d messages in %s", n, time.Since(fill).Round(time.Second))
	escrow := devEscrow(b, h.Cfg)
	dbBytes := dbSize(b, h)
	b.ResetTimer()
	var create, restore time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		info, err := h.G.BackupOnce(ctx, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		state, _ := gateway.BackupFiles(h.Cfg)
		root := b.TempDir()
		targets := backup.Targets{DB: filepath.Join(root, "phigate.db"), Files: map[string]string{}}
		if store.IsPostgresURL(h.Cfg.Store.URL) {
			targets = freshTargets(b, h)
		}
		for name := range state {
			targets.Files[name] = filepath.Join(root, name)
		}
		if _, err := backup.Restore(info.Path, escrow, h.G.Keys.Gateway.Public(), targets); err != nil {
			b.Fatal(err)
		}
		create, restore = create+t1.Sub(t0), restore+time.Since(t1)
		b.ReportMetric(float64(info.Size)/1e6, "backup-MB")
	}
	b.ReportMetric(float64(dbBytes)/1e6, "db-MB")
	b.ReportMetric(create.Seconds()/float64(b.N), "create-s")
	b.ReportMetric(restore.Seconds()/float64(b.N), "restore-s")
}

// dbSize is the SQLite file's size, or the PostgreSQL database's.
func dbSize(b *testing.B, h *e2e.Harness) int64 {
	if store.IsPostgresURL(h.Cfg.Store.URL) {
		var n int64
		if err := h.G.Store.DB().QueryRow(`SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	st, err := os.Stat(h.Cfg.Database.DSN)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}
