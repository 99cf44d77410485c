package intake

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowStored counts StoredBytes calls and holds each until release closes.
type slowStored struct {
	calls   atomic.Int64
	release chan struct{}
}

func (s *slowStored) StoredBytes(context.Context, string) (int64, error) {
	s.calls.Add(1)
	<-s.release
	return 4096, nil
}

// TestStoredTallyOneReadForConcurrentCallers: callers that find the
// sender's figure stale while a read is under way wait for that read
// instead of each running the SUM (issue 12.5).
func TestStoredTallyOneReadForConcurrentCallers(t *testing.T) {
	var tally storedTally
	src := &slowStored{release: make(chan struct{})}
	now := time.Now()
	var wg sync.WaitGroup
	got := make([]int64, 32)
	for i := range got {
		wg.Go(func() {
			n, err := tally.get(context.Background(), src, "sender", now)
			if err != nil {
				t.Error(err)
			}
			got[i] = n
		})
	}
	// Let every caller reach the read in progress before it ends.
	deadline := time.Now().Add(5 * time.Second)
	for src.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(src.release)
	wg.Wait()
	if c := src.calls.Load(); c != 1 {
		t.Errorf("%d store reads for 32 concurrent callers, want 1", c)
	}
	for i, n := range got {
		if n != 4096 {
			t.Errorf("caller %d got %d, want 4096", i, n)
		}
	}
	// A waiter whose own request ends stops waiting; the read goes on.
	src2 := &slowStored{release: make(chan struct{})}
	var tally2 storedTally
	done := make(chan error, 1)
	go func() { _, err := tally2.get(context.Background(), src2, "s", now); done <- err }()
	for src2.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tally2.get(ctx, src2, "s", now); err == nil {
		t.Error("a cancelled waiter got no error")
	}
	close(src2.release)
	if err := <-done; err != nil {
		t.Errorf("the reader failed: %v", err)
	}
}
