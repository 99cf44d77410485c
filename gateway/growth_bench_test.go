package gateway_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/store"
)

// EnvSeeded names a data folder filled by bench/seed (issue 12, goal 5).
const EnvSeeded = "PHIGATE_BENCH_SEEDED"

// BenchmarkIntakeGrowth is BenchmarkIntake20KB's load (20 KB messages to
// 50 portal recipients, 16 concurrent deliveries per GOMAXPROCS, through
// Intake.Accept: detectors, policy, sign + encrypt body and summary, the
// group-committed delivery with its notice and audit entries) on an empty
// store and on a copy of the store bench/seed filled (100,000 messages,
// 10,000 accounts, their audit chain), back to back; figures in
// docs/perf.md, "Cost growth". Both use BenchmarkIntake20KB's settings
// (e2e.Config). It also times one stored-bytes quota query for the sender
// (SUM over every copy it sent). The copy is fresh for each run, so runs
// do not grow the seed, and synced before the gateway starts; 200
// messages (warmUp) go before the clock on both arms:
//
//	go run ./bench/seed -data /tmp/seeded -messages 100000 -accounts 10000
//	PHIGATE_BENCH_SEEDED=/tmp/seeded go test ./gateway -run '^$' -bench IntakeGrowth -benchtime 3000x -count 3
//
// SQLite only: the seed is a dev data folder.
func BenchmarkIntakeGrowth(b *testing.B) {
	seeded := os.Getenv(EnvSeeded)
	if seeded == "" {
		b.Skip(EnvSeeded + " is not set: make a seeded folder with bench/seed first")
	}
	for _, arm := range []string{"empty", "seeded"} {
		b.Run(arm, func(b *testing.B) {
			e2e.Silence()
			dir := b.TempDir()
			if arm == "seeded" {
				if err := copyTree(seeded, dir); err != nil {
					b.Fatal(err)
				}
			}
			h := e2e.Start(b, e2e.Config(dir)) // BenchmarkIntake20KB's settings
			ctx := context.Background()
			sender, err := h.G.Identity.UserByEmail(ctx, staff)
			if err != nil {
				h.AddStaff(staff)
				if sender, err = h.G.Identity.UserByEmail(ctx, staff); err != nil {
					b.Fatal(err)
				}
			}
			chain, _, err := h.G.Trail.Head(ctx)
			if err != nil {
				b.Fatal(err)
			}
			// The stored-bytes quota's query over everything the sender
			// has sent (intake asks it at most every 30 s per sender).
			t0 := time.Now()
			if _, err := h.G.Store.StoredBytes(ctx, sender.ID); err != nil {
				b.Fatal(err)
			}
			storedQuery := time.Since(t0)
			raw := benchMessage(20 << 10)
			warmUp(b, h, sender, raw)
			var n atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			cpu := startCPU(b)
			io0 := procIO()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					rcpt := fmt.Sprintf("bench%d@example.net", n.Add(1)%50)
					t0 := time.Now()
					if _, err := h.G.Intake.Accept(ctx, intake.Envelope{Sender: sender, From: staff, To: []string{rcpt}}, raw); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			cpu.report(b)
			reportIO(b, io0, procIO())
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(pct(lat, 0.5).Microseconds())/1000, "accept-p50-ms")
			b.ReportMetric(float64(pct(lat, 0.99).Microseconds())/1000, "accept-p99-ms")
			b.ReportMetric(float64(chain), "audit-entries-before")
			b.ReportMetric(float64(storedQuery.Microseconds())/1000, "stored-bytes-query-ms")
		})
	}
}

// warmUp delivers 4 messages to each of the 50 recipients before the
// clock starts, on both arms alike: the first creates the recipient's
// pending account (one commit each, before any group commit), and the
// store's page cache fills. Without it the first deliveries of a run
// wait behind those commits for 0.4 s and more, which at 3,000 messages
// moves the rate by several per cent from run to run.
func warmUp(b *testing.B, h *e2e.Harness, sender *store.User, raw []byte) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcpt := fmt.Sprintf("bench%d@example.net", i%50)
			if _, err := h.G.Intake.Accept(ctx, intake.Envelope{Sender: sender, From: staff, To: []string{rcpt}}, raw); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}

// procIO reads the process's I/O counters from /proc/self/io: bytes
// and calls of read and write (pread and pwrite included), whether the
// page cache answered them or the disk. Nil where there is no such file.
func procIO() map[string]int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return nil
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if n, err := strconv.ParseInt(v, 10, 64); ok && err == nil {
			m[k] = n
		}
	}
	return m
}

// reportIO adds the read and write calls and bytes per message between
// two procIO readings: on SQLite, mostly pages read (pread) and written
// to the WAL and the database file. Unlike time, these barely depend on
// the machine's load.
func reportIO(b *testing.B, from, to map[string]int64) {
	if from == nil || to == nil {
		return
	}
	n := float64(b.N)
	b.ReportMetric(float64(to["syscr"]-from["syscr"])/n, "reads/msg")
	b.ReportMetric(float64(to["rchar"]-from["rchar"])/n/1024, "read-KiB/msg")
	b.ReportMetric(float64(to["syscw"]-from["syscw"])/n, "writes/msg")
	b.ReportMetric(float64(to["wchar"]-from["wchar"])/n/1024, "written-KiB/msg")
}

// copyTree copies the regular files under src to dst (a dev data folder:
// keys, the SQLite database and its WAL, the audit checkpoints).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, info.Mode().Perm()|0o700)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		// Synced, so the timed run's first commits do not wait on the
		// file system writing back the copy (ext4 orders an fsync after
		// earlier dirty data: seconds for a 1.2 GB copy).
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
