package store

// Issue 10.3: Web Push subscriptions. Part of the backend suite.

import (
	"context"
	"sync"
	"testing"
	"time"
)

func mkPush(u *User, endpoint string, created time.Time) PushSubscription {
	id := uid("push")
	return PushSubscription{ID: id, UserID: u.ID, EndpointMAC: hash("endpoint", endpoint), Host: "fcm.googleapis.com",
		Label: "phone " + id, SubEnc: []byte("sealed-sub|" + id), CreatedAt: created}
}

func pushIDs(ps []PushSubscription) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func testPushSubscriptions(t *testing.T, s Store) {
	ctx := context.Background()
	a, b := mkUser(t, s, RoleStaff, StatusActive), mkUser(t, s, RolePatient, StatusActive)

	if got, err := s.PushSubscriptions(ctx, a.ID); err != nil || len(got) != 0 {
		t.Fatalf("no devices yet: %v, %v", got, err)
	}
	p1, p2 := mkPush(a, "e1", t0), mkPush(a, "e2", t0.Add(time.Second))
	for _, p := range []PushSubscription{p2, p1} {
		if err := s.AddPushSubscription(ctx, p, 2); err != nil {
			t.Fatalf("AddPushSubscription(%s): %v", p.ID, err)
		}
	}
	got, err := s.PushSubscriptions(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "devices, oldest first", pushIDs(got), []string{p1.ID, p2.ID})
	g := got[0]
	if g.UserID != a.ID || g.Host != p1.Host || g.Label != p1.Label || g.LastSuccess != nil {
		t.Errorf("round trip: got %+v, want %+v", g, p1)
	}
	eqBytes(t, "endpoint mac", g.EndpointMAC, p1.EndpointMAC)
	eqBytes(t, "sealed subscription", g.SubEnc, p1.SubEnc)
	eqTime(t, "created", g.CreatedAt, p1.CreatedAt)

	// The bound: a third device is refused, the same endpoint again is a
	// replacement, not a third.
	wantErr(t, "third device", s.AddPushSubscription(ctx, mkPush(a, "e3", t0), 2), ErrLimit)
	again := mkPush(a, "e2", t0.Add(2*time.Second))
	if err := s.AddPushSubscription(ctx, again, 2); err != nil {
		t.Fatalf("same endpoint again: %v", err)
	}
	got, _ = s.PushSubscriptions(ctx, a.ID)
	sameIDs(t, "after re-subscribing e2", pushIDs(got), []string{p1.ID, again.ID})

	// A shared device belongs to whoever subscribed it last.
	taken := mkPush(b, "e1", t0.Add(3*time.Second))
	if err := s.AddPushSubscription(ctx, taken, 2); err != nil {
		t.Fatal(err)
	}
	got, _ = s.PushSubscriptions(ctx, a.ID)
	sameIDs(t, "a after b took e1", pushIDs(got), []string{again.ID})

	at := t0.Add(time.Hour)
	if err := s.PushDelivered(ctx, at, again.ID, taken.ID, "gone-meanwhile"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{again.ID, taken.ID} {
		one, err := s.PushSubscriptionByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		eqTimePtr(t, "last success", one.LastSuccess, &at)
	}

	// Only the owner deletes a device.
	wantErr(t, "b deletes a's device", s.DeletePushSubscription(ctx, b.ID, again.ID), ErrNotFound)
	if err := s.DeletePushSubscription(ctx, a.ID, again.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "deleted twice", s.DeletePushSubscription(ctx, a.ID, again.ID), ErrNotFound)
	_, err = s.PushSubscriptionByID(ctx, again.ID)
	wantErr(t, "deleted device", err, ErrNotFound)
	got, _ = s.PushSubscriptions(ctx, b.ID)
	sameIDs(t, "b's devices", pushIDs(got), []string{taken.ID})

	// Concurrent subscriptions never pass the bound.
	c := mkUser(t, s, RolePatient, StatusActive)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.AddPushSubscription(ctx, mkPush(c, uid("ep")+string(rune('a'+i)), t0), 3)
		}()
	}
	wg.Wait()
	if got, _ := s.PushSubscriptions(ctx, c.ID); len(got) != 3 {
		t.Errorf("8 concurrent subscriptions with a bound of 3 left %d", len(got))
	}
}
