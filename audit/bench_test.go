package audit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func benchEntry(i int64) Entry {
	return Entry{
		Actor: "3f9a1c0e5b7d4e21a0c8b6d2e4f10a37", IP: "198.51.100.23", Action: "smtp.accept",
		ObjectType: "message", ObjectID: "m-" + strconv.FormatInt(i, 10), Outcome: OK, Correlation: "9c2e4a61b07d3f58",
		Details: map[string]string{"rcpt": "pat.jones@example.org", "policy": "portal", "size": "20480"},
	}
}

// BenchmarkRecord: one writer, each Record waiting for its own commit (one
// fsync per entry: the worst case).
func BenchmarkRecord(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if err := e.tr.Record(ctx, benchEntry(int64(i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkRecordParallel: many writers at once, as under intake load; the
// group committer puts the waiting entries into one transaction.
func BenchmarkRecordParallel(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := e.tr.Record(ctx, benchEntry(n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
	b.StopTimer()
	if got, err := e.tr.Verify(ctx); err != nil || got != int64(b.N) {
		b.Fatalf("Verify = %d, %v", got, err)
	}
}

// BenchmarkVerify: how fast the chain is checked (entries/s).
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, nil)
	ctx := context.Background()
	const n = 20000
	done := make(chan error, 64)
	for g := range 64 {
		go func() {
			for i := range n / 64 {
				if err := e.tr.Record(ctx, benchEntry(int64(g*n+i))); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 64 {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	var checked int64
	for range b.N {
		c, err := e.tr.Verify(ctx)
		if err != nil {
			b.Fatal(err)
		}
		checked += c
	}
	b.ReportMetric(float64(checked)/time.Since(start).Seconds(), "entries/s")
}
