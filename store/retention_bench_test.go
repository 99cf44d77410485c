package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkPurge10k measures disposing of 10,000 due messages (64 KiB of
// ciphertext each) on SQLite in runs of 100 (the default
// retention.purge_batch) and 500 rows: each run is one transaction with
// its audit entries (holding the write lock), then a WAL checkpoint
// (issue 14.4). Reported: ms per run, and µs per message.
//
//	go test ./store -run '^$' -bench BenchmarkPurge10k -benchtime 1x
func BenchmarkPurge10k(b *testing.B) {
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) { benchPurge(b, batch) })
	}
}

func benchPurge(b *testing.B, batch int) {
	const n = 10000
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "phigate.db"))
		if err != nil {
			b.Fatal(err)
		}
		sender := newUser(b, uid("user"), RoleStaff, StatusActive)
		rcpt := newUser(b, uid("user"), RolePatient, StatusActive)
		for _, u := range []*User{sender, rcpt} {
			if err := s.CreateUser(ctx, u); err != nil {
				b.Fatal(err)
			}
		}
		body := randBytes(b, 64<<10)
		for i := 0; i < n; i += 250 {
			var ms []Message
			for range 250 {
				m := mkMsg(rcpt, sender, t0)
				m.Body = body
				ms = append(ms, m)
			}
			deliver(b, s, Delivery{Messages: ms})
		}
		b.StartTimer()
		start, runs, done := time.Now(), 0, 0
		for {
			r, err := s.Purge(ctx, PurgePlan{Now: t0.Add(31 * day), Batch: batch}, (&purgeRecorder{}).audit)
			if err != nil {
				b.Fatal(err)
			}
			runs++
			done += r.Messages()
			if !r.More {
				break
			}
		}
		el := time.Since(start)
		b.StopTimer()
		if done != n {
			b.Fatalf("disposed of %d of %d", done, n)
		}
		b.ReportMetric(float64(el.Milliseconds())/float64(runs), "ms/run")
		b.ReportMetric(float64(el.Microseconds())/float64(n), "µs/message")
		s.Close()
	}
}
