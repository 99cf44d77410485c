package store

// Issue 10.4: notification preferences and notice batching. Part of the
// backend suite.

import (
	"context"
	"sync"
	"testing"
	"time"
)

const window = 10 * time.Minute

// batched is one message to u at `at` with its notice on batch key.
func batched(t *testing.T, s Store, u, sender *User, key string, at time.Time) (Message, OutboxItem) {
	t.Helper()
	m := mkMsg(u, sender, at)
	o := mkOutbox(u.ID, m.ID, at)
	o.CreatedAt, o.Batch, o.Window = at, key, window
	deliver(t, s, Delivery{Messages: []Message{m}, Outbox: []OutboxItem{o}})
	return m, o
}

func dueAt(t *testing.T, s Store, at time.Time) []string {
	t.Helper()
	due, err := s.DueOutbox(context.Background(), at, 100)
	if err != nil {
		t.Fatal(err)
	}
	return outboxIDs(due)
}

func sent(t *testing.T, s Store, at time.Time, ids ...string) {
	t.Helper()
	if err := s.OutboxSent(context.Background(), at, ids...); err != nil {
		t.Fatal(err)
	}
}

func testNoticeBatching(t *testing.T, s Store) {
	ctx := context.Background()
	u, sender := mkUser(t, s, RolePatient, StatusActive), mkUser(t, s, RoleStaff, StatusActive)
	key := "email:" + u.ID

	// The first message's notice is due at once.
	m1, o1 := batched(t, s, u, sender, key, t0)
	sameIDs(t, "first notice", dueAt(t, s, t0), []string{o1.ID})
	// A second message while the first notice is unsent: covered by it.
	m2, _ := batched(t, s, u, sender, key, t0.Add(time.Minute))
	sameIDs(t, "covered by the unsent first", dueAt(t, s, t0.Add(time.Minute)), []string{o1.ID})
	sent(t, s, t0.Add(time.Minute), o1.ID)

	// After the first went out: one follow-up at the window's end, which
	// covers every later message of the window.
	_, o3 := batched(t, s, u, sender, key, t0.Add(2*time.Minute))
	_, _ = batched(t, s, u, sender, key, t0.Add(3*time.Minute))
	_, _ = batched(t, s, u, sender, key, t0.Add(9*time.Minute))
	sameIDs(t, "nothing before the window's end", dueAt(t, s, t0.Add(window-time.Nanosecond)), nil)
	sameIDs(t, "one follow-up at the window's end", dueAt(t, s, t0.Add(window)), []string{o3.ID})
	sent(t, s, t0.Add(window), o3.ID)

	// The follow-up opened the next window: a message soon after it waits
	// for that window's end, not sent at once.
	_, o6 := batched(t, s, u, sender, key, t0.Add(window+time.Minute))
	sameIDs(t, "next window", dueAt(t, s, t0.Add(2*window-time.Nanosecond)), nil)
	sameIDs(t, "next window's follow-up", dueAt(t, s, t0.Add(2*window)), []string{o6.ID})
	sent(t, s, t0.Add(2*window), o6.ID)

	// Once a window passed with nothing in it, a message is first again.
	later := t0.Add(3*window + time.Second)
	_, o7 := batched(t, s, u, sender, key, later)
	sameIDs(t, "first again after a quiet window", dueAt(t, s, later), []string{o7.ID})

	// A notice that failed for good covers nothing: the next message gets
	// a notice of its own (at the window's end).
	if err := s.OutboxRetry(ctx, o7.ID, 40, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), "550 no such user"); err != nil {
		t.Fatal(err)
	}
	_, o8 := batched(t, s, u, sender, key, later.Add(time.Minute))
	sameIDs(t, "not covered by a failed notice", dueAt(t, s, later.Add(window)), []string{o8.ID})

	// Other batches (another channel, another recipient) and notices
	// without a batch are their own.
	v := mkUser(t, s, RolePatient, StatusActive)
	_, p1 := batched(t, s, u, sender, "push:device-1", later.Add(time.Minute))
	_, v1 := batched(t, s, v, sender, "email:"+v.ID, later.Add(time.Minute))
	plain := mkOutbox(u.ID, "", later.Add(time.Minute))
	deliver(t, s, Delivery{Outbox: []OutboxItem{plain}})
	sameIDs(t, "independent batches", dueAt(t, s, later.Add(time.Minute)), []string{p1.ID, v1.ID, plain.ID})

	// Every message is stored, covered or not.
	for _, m := range []Message{m1, m2} {
		if _, err := s.GetMessage(ctx, m.ID); err != nil {
			t.Errorf("message %s: %v", m.ID, err)
		}
	}
}

// Messages to one recipient committed at the same moment (PostgreSQL
// commits them side by side) still make one notice.
func testConcurrentBatching(t *testing.T, s Store) {
	u, sender := mkUser(t, s, RolePatient, StatusActive), mkUser(t, s, RoleStaff, StatusActive)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := mkMsg(u, sender, t0)
			o := mkOutbox(u.ID, m.ID, t0)
			o.CreatedAt, o.Batch, o.Window = t0, "email:"+u.ID, window
			errs <- s.Deliver(context.Background(), Delivery{Messages: []Message{m}, Outbox: []OutboxItem{o}})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Deliver: %v", err)
		}
	}
	if got := dueAt(t, s, t0.Add(2*window)); len(got) != 1 {
		t.Fatalf("8 messages at once: %d notices, want 1", len(got))
	}
}

func testNotifyPrefs(t *testing.T, s Store) {
	ctx := context.Background()
	u := mkUser(t, s, RolePatient, StatusActive)
	if c, err := s.NotifyChannels(ctx, u.ID); err != nil || c != "" {
		t.Fatalf("no choice yet: %q, %v", c, err)
	}
	for _, c := range []string{"push", "email", "both", ""} {
		if err := s.SetNotifyChannels(ctx, u.ID, c, t0, nil); err != nil {
			t.Fatalf("SetNotifyChannels(%q): %v", c, err)
		}
		if got, err := s.NotifyChannels(ctx, u.ID); err != nil || got != c {
			t.Errorf("after setting %q: %q, %v", c, got, err)
		}
	}
}
