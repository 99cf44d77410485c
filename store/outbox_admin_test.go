package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The admin's list of failed notices holds the unsent rows whose last
// attempt failed, and a retry makes one due now with its attempts counted
// from zero; a sent row cannot be retried.
func TestFailedOutboxAndRequeue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, node func() *SQL) {
		s, ctx := node(), context.Background()
		now := time.Unix(1_800_000_000, 0)
		never := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
		item := func(id string, age time.Duration) OutboxItem {
			return OutboxItem{ID: id, Kind: "new-message", Payload: []byte("sealed"), CreatedAt: now.Add(-age), NextAttemptAt: now.Add(-age)}
		}
		if err := s.Deliver(ctx, Delivery{Outbox: []OutboxItem{item("given-up", 3*time.Hour), item("retrying", time.Hour),
			item("fresh", time.Minute), item("sent-later", 2*time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct {
			id       string
			attempts int
			next     time.Time
		}{{"given-up", 40, never}, {"retrying", 2, now.Add(time.Minute)}, {"sent-later", 1, now}} {
			if err := s.OutboxRetry(ctx, r.id, r.attempts, r.next, "550 5.1.1 mailbox unavailable"); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.OutboxSent(ctx, now, "sent-later"); err != nil {
			t.Fatal(err)
		}
		failed, err := s.FailedOutbox(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(failed) != 2 || failed[0].ID != "retrying" || failed[1].ID != "given-up" {
			t.Fatalf("failed rows %+v", failed)
		}
		if f := failed[1]; f.Attempts != 40 || !f.NextAttemptAt.Equal(never) || f.LastError != "550 5.1.1 mailbox unavailable" ||
			string(f.Payload) != "sealed" || !f.CreatedAt.Equal(now.Add(-3*time.Hour)) {
			t.Fatalf("given-up row %+v", f)
		}

		if err := s.RequeueOutbox(ctx, "given-up", now); err != nil {
			t.Fatal(err)
		}
		due, err := s.DueOutbox(ctx, now, 10)
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, d := range due {
			if d.ID == "given-up" {
				found = d.Attempts == 0
			}
		}
		if !found {
			t.Fatalf("the retried row is not due now with 0 attempts: %+v", due)
		}
		if last, err := s.LastOutboxFor(ctx, "no-such-message", "new-message"); err != nil || !last.IsZero() {
			t.Errorf("LastOutboxFor a message without notices: %v %v", last, err)
		}
		for _, id := range []string{"sent-later", "no-such-row"} {
			if err := s.RequeueOutbox(ctx, id, now); !errors.Is(err, ErrNotFound) {
				t.Errorf("requeue %s: %v, want ErrNotFound", id, err)
			}
		}
	})
}
