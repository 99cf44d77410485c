package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestLeaseOutboxDisjoint: two nodes leasing the same due notices at once
// never both get one (a notice is sent once per lease).
func TestLeaseOutboxDisjoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, node func() *SQL) {
		ctx := context.Background()
		s := node()
		u := mkUser(t, s, RolePatient, StatusPending)
		var items []OutboxItem
		for i := 0; i < 40; i++ {
			items = append(items, mkOutbox(u.ID, "", t0))
		}
		deliver(t, s, Delivery{Outbox: items})
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			n := node() // each its own handle, as separate processes
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := n.LeaseOutbox(ctx, t0.Add(time.Second), t0.Add(time.Hour), 64)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, o := range got {
					seen[o.ID]++
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(seen) != 40 {
			t.Errorf("%d items leased, want 40", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("%s leased %d times", id, n)
			}
		}
		// Leased items are not due again until the lease runs out.
		if again, _ := s.LeaseOutbox(ctx, t0.Add(time.Minute), t0.Add(2*time.Hour), 64); len(again) != 0 {
			t.Errorf("%d leased items were due again", len(again))
		}
		if after, _ := s.LeaseOutbox(ctx, t0.Add(time.Hour), t0.Add(2*time.Hour), 64); len(after) != 40 {
			t.Errorf("after the lease: %d due, want 40", len(after))
		}
	})
}
