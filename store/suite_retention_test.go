package store

// Issue 14.4: retention and disposal. Part of the backend suite.

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

const day = 24 * time.Hour

// purgeRecorder is a RetentionAudit that seals one entry per disposed
// message and account and one summary entry, and remembers the result it
// was shown.
type purgeRecorder struct {
	fail  error
	calls int
	last  PurgeResult
}

func (p *purgeRecorder) audit(r PurgeResult) AuditFunc {
	p.calls++
	p.last = r
	ids := append(slices.Concat(r.Expired, r.Recalled, r.Denied, r.Accounts), "retention-run")
	return (&chained{action: "retention.test", ids: ids, fail: p.fail}).fn
}

func testRetention(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	active := mkUser(t, s, RolePatient, StatusActive)
	pending := mkUser(t, s, RolePatient, StatusPending)
	// An active account with nothing in it is never an unclaimed one.
	idle := mkUser(t, s, RolePatient, StatusActive)

	readWindow := mkMsg(active, sender, t0) // no deadline given: its read window's end
	kept := mkMsg(active, sender, t0)       // a rule's retain = 365d
	kept.DisposeAt = t0.Add(365 * day)
	recalled := mkMsg(active, sender, t0)
	toPending := mkMsg(pending, sender, t0)
	tok := mkToken(pending, t0, 7*day)
	deliver(t, s, Delivery{Messages: []Message{readWindow, kept, recalled, toPending}, ClaimTokens: []ClaimToken{tok},
		Outbox: []OutboxItem{mkOutbox(pending.ID, toPending.ID, t0)}})
	if err := s.Recall(ctx, recalled.ID, sender.ID, nil); err != nil {
		t.Fatal(err)
	}
	unused, used := mkPush(active, "https://push.example/unused", t0), mkPush(active, "https://push.example/used", t0)
	for _, p := range []PushSubscription{unused, used} {
		if err := s.AddPushSubscription(ctx, p, 10); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PushDelivered(ctx, t0.Add(100*day), used.ID); err != nil {
		t.Fatal(err)
	}

	// The deadline round-trips; without one it is the read window's end.
	if g, err := s.MessageMeta(ctx, kept.ID); err != nil || !g.DisposeAt.Equal(kept.DisposeAt) || g.PurgedAt != nil {
		t.Fatalf("kept message: %+v, %v", g, err)
	}
	if g, _ := s.MessageMeta(ctx, readWindow.ID); !g.DisposeAt.Equal(readWindow.ExpiresAt) {
		t.Errorf("default deadline %s, want the read window's end %s", ts(g.DisposeAt), ts(readWindow.ExpiresAt))
	}

	plan := func(at time.Time) PurgePlan {
		return PurgePlan{Now: at, UnclaimedFor: 90 * day, PushStaleFor: 180 * day, Batch: 100}
	}
	run := func(at time.Time) PurgeResult {
		t.Helper()
		rec := &purgeRecorder{}
		before := head(t, s)
		r, err := s.Purge(ctx, plan(at), rec.audit)
		if err != nil {
			t.Fatalf("Purge at +%s: %v", at.Sub(t0), err)
		}
		wantEntries := 0
		if !r.Empty() {
			wantEntries = r.Messages() + len(r.Accounts) + 1
			if rec.calls == 0 || !slices.Equal(rec.last.Expired, r.Expired) || !slices.Equal(rec.last.Accounts, r.Accounts) {
				t.Errorf("audit shown %+v (calls %d), run returned %+v", rec.last, rec.calls, r)
			}
		} else if rec.calls != 0 {
			t.Errorf("an empty run asked for audit entries")
		}
		if got := head(t, s) - before; got != int64(wantEntries) {
			t.Errorf("run at +%s wrote %d entries, want %d", at.Sub(t0), got, wantEntries)
		}
		return r
	}
	purged := func(id string) bool {
		t.Helper()
		g, err := s.GetMessage(ctx, id)
		if err != nil {
			t.Fatalf("GetMessage(%s): %v", id, err)
		}
		if (g.PurgedAt != nil) != (len(g.Body) == 0 && len(g.KeyPackets) == 0 && len(g.Summary) == 0 && len(g.SummaryKeys) == 0) {
			t.Errorf("message %s: purged_at %v but body %d, key packets %d bytes", id, g.PurgedAt, len(g.Body), len(g.KeyPackets))
		}
		return g.PurgedAt != nil
	}

	// A failing audit step disposes of nothing.
	if _, err := s.Purge(ctx, plan(t0.Add(time.Hour)), (&purgeRecorder{fail: errInjected}).audit); !errors.Is(err, errInjected) {
		t.Fatalf("purge with a failing audit step: %v", err)
	}
	if purged(recalled.ID) {
		t.Fatal("a failed purge emptied the recalled message")
	}

	// An hour in: only the recalled message goes.
	r := run(t0.Add(time.Hour))
	if !slices.Equal(r.Recalled, []string{recalled.ID}) || len(r.Expired) != 0 || r.Tokens != 0 || len(r.Accounts) != 0 || r.More {
		t.Fatalf("first run: %+v", r)
	}
	if !purged(recalled.ID) || purged(readWindow.ID) || purged(kept.ID) {
		t.Fatal("first run disposed of the wrong messages")
	}

	// Day 31: the read windows ended; the 365-day one stays; the claim
	// link expired on day 7; the pending account is not due yet.
	r = run(t0.Add(31 * day))
	want := []string{readWindow.ID, toPending.ID}
	slices.Sort(want)
	got := slices.Clone(r.Expired)
	slices.Sort(got)
	if !slices.Equal(got, want) || r.Tokens != 1 || len(r.Accounts) != 0 || r.PushSubscriptions != 0 {
		t.Fatalf("day 31: %+v, want expired %v and one token", r, want)
	}
	if purged(kept.ID) {
		t.Fatal("the 365-day message was disposed of on day 31")
	}
	if _, err := s.ClaimTokenByHash(ctx, tok.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired claim link still stored: %v", err)
	}
	if n, oldest, err := s.RetentionBacklog(ctx, t0.Add(31*day)); err != nil || n != 0 {
		t.Errorf("backlog on day 31: %d, %v", n, err)
	} else if n, oldest, _ = s.RetentionBacklog(ctx, t0.Add(400*day)); n != 1 || !oldest.Equal(kept.DisposeAt) {
		t.Errorf("backlog on day 400: %d, oldest %s; want 1, %s", n, ts(oldest), ts(kept.DisposeAt))
	}

	// Day 200: the pending account, unclaimed 90 days after its last
	// message and with nothing left to read, goes with its pending key,
	// its notices and its emptied message rows; the push subscription
	// never used goes, the one used on day 100 stays.
	r = run(t0.Add(200 * day))
	if !slices.Equal(r.Accounts, []string{pending.ID}) || r.PendingKeys != 1 || r.PushSubscriptions != 1 || r.Messages() != 0 {
		t.Fatalf("day 200: %+v", r)
	}
	if _, err := s.UserByID(ctx, pending.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("unclaimed account still there: %v", err)
	}
	if _, err := s.UserByEmailIndex(ctx, pending.EmailIndex); !errors.Is(err, ErrNotFound) {
		t.Errorf("unclaimed account's address index still there: %v", err)
	}
	if _, err := s.GetMessage(ctx, toPending.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("unclaimed account's message row still there: %v", err)
	}
	for _, u := range []*User{active, idle, sender} {
		if _, err := s.UserByID(ctx, u.ID); err != nil {
			t.Errorf("account %s disposed of: %v", u.ID, err)
		}
	}
	if ps, _ := s.PushSubscriptions(ctx, active.ID); !slices.Equal(pushIDs(ps), []string{used.ID}) {
		t.Errorf("push subscriptions after day 200: %v, want %v", pushIDs(ps), []string{used.ID})
	}

	// Day 400: the 365-day message and the push subscription last used on
	// day 100 go; then nothing is left to do.
	r = run(t0.Add(400 * day))
	if !slices.Equal(r.Expired, []string{kept.ID}) || r.PushSubscriptions != 1 || !purged(kept.ID) {
		t.Fatalf("day 400: %+v", r)
	}
	if r = run(t0.Add(400 * day)); !r.Empty() {
		t.Fatalf("run with nothing due: %+v", r)
	}
	if g, _ := s.MessageMeta(ctx, kept.ID); g == nil || g.State != StateDelivered {
		t.Error("a disposed message's row (status and history) was not kept")
	}
	checkChain(t, s)
}

// testRetentionBatch: a run touches at most Batch rows of a kind and says
// when there is more (invariant 7).
func testRetentionBatch(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	rcpt := mkUser(t, s, RolePatient, StatusActive)
	var ms []Message
	for range 5 {
		ms = append(ms, mkMsg(rcpt, sender, t0))
	}
	deliver(t, s, Delivery{Messages: ms})
	p := PurgePlan{Now: t0.Add(31 * day), Batch: 2}
	var total []string
	for i, wantMore := range []bool{true, true, false} {
		r, err := s.Purge(ctx, p, (&purgeRecorder{}).audit)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Expired) > 2 || r.More != wantMore {
			t.Fatalf("run %d: %d messages, more %v; want at most 2, more %v", i+1, len(r.Expired), r.More, wantMore)
		}
		total = append(total, r.Expired...)
	}
	if len(total) != 5 {
		t.Fatalf("three runs of 2 disposed of %d of 5", len(total))
	}
}
