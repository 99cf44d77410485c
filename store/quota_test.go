package store

import (
	"context"
	"testing"
	"time"
)

// TestStoredBytes: an account's stored bytes are the sizes of the copies it
// sent that still hold ciphertext; recalled copies stop counting once purged.
func TestStoredBytes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, node func() *SQL) {
		ctx := context.Background()
		s := node()
		sender, other := mkUser(t, s, RoleStaff, StatusActive), mkUser(t, s, RoleStaff, StatusActive)
		p1, p2 := mkUser(t, s, RolePatient, StatusPending), mkUser(t, s, RolePatient, StatusPending)
		want := func(u *User, n int64) {
			t.Helper()
			got, err := s.StoredBytes(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got != n {
				t.Errorf("StoredBytes(%s) = %d, want %d", u.ID, got, n)
			}
		}
		want(sender, 0)
		a, b, c := mkMsg(p1, sender, t0), mkMsg(p2, sender, t0), mkMsg(p1, other, t0)
		a.Size, b.Size, c.Size = 1000, 2500, 7
		b.State = StateQuarantined
		deliver(t, s, Delivery{Messages: []Message{a, b, c}})
		want(sender, 3500)
		want(other, 7)
		if err := s.Recall(ctx, a.ID, sender.ID, nil); err != nil {
			t.Fatal(err)
		}
		// Recalled but not yet purged: the ciphertext is still held.
		want(sender, 3500)
		if _, err := s.PurgeCiphertext(ctx, t0.Add(time.Minute), nil); err != nil {
			t.Fatal(err)
		}
		want(sender, 2500)
		// Expired and purged copies count no more.
		if _, err := s.PurgeCiphertext(ctx, t0.Add(31*24*time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		want(sender, 0)
		want(other, 0)
	})
}
