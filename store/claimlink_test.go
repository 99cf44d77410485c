package store

// Issue 13.1 and 13.9 on both backends: what a pending account still has
// to read, a new claim link (old links end, one per interval however many
// ask at once, only for a pending account), and notice references.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestClaimLinks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, node func() *SQL) {
		s := node()
		t.Run("Standing", func(t *testing.T) { testClaimStanding(t, s) })
		t.Run("Renew", func(t *testing.T) { testRenewClaim(t, s) })
		t.Run("RenewConcurrent", func(t *testing.T) { testRenewClaimConcurrent(t, s, node()) })
		t.Run("References", func(t *testing.T) { testNoticeReferences(t, s) })
		t.Run("PurgeKeepsRenewableLinks", func(t *testing.T) { testPurgeKeepsRenewableLinks(t, s) })
	})
}

func standing(t *testing.T, s Store, u *User, now time.Time) (int, int) {
	t.Helper()
	r, w, err := s.ClaimStanding(context.Background(), u.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

func testClaimStanding(t *testing.T, s Store) {
	ctx := context.Background()
	u, sender := mkUser(t, s, RolePatient, StatusPending), mkUser(t, s, RoleStaff, StatusActive)
	if r, w := standing(t, s, u, t0); r != 0 || w != 0 {
		t.Fatalf("no messages: readable %d withdrawn %d", r, w)
	}
	m1, m2 := mkMsg(u, sender, t0), mkMsg(u, sender, t0)
	deliver(t, s, Delivery{Messages: []Message{m1, m2}})
	if r, w := standing(t, s, u, t0); r != 2 || w != 0 {
		t.Fatalf("two delivered: readable %d withdrawn %d", r, w)
	}
	if err := s.Recall(ctx, m1.ID, sender.ID, nil); err != nil {
		t.Fatal(err)
	}
	if r, w := standing(t, s, u, t0); r != 1 || w != 1 {
		t.Fatalf("one recalled: readable %d withdrawn %d", r, w)
	}
	// Expired counts as nothing to read.
	if r, _ := standing(t, s, u, m2.ExpiresAt); r != 0 {
		t.Fatalf("after expiry: readable %d", r)
	}
	if err := s.Recall(ctx, m2.ID, sender.ID, nil); err != nil {
		t.Fatal(err)
	}
	// Purged after the recall: still withdrawn, still nothing to read.
	if _, err := s.PurgeCiphertext(ctx, t0, nil); err != nil {
		t.Fatal(err)
	}
	if r, w := standing(t, s, u, t0); r != 0 || w != 2 {
		t.Fatalf("all recalled and purged: readable %d withdrawn %d", r, w)
	}
	// Another account's messages do not count.
	other := mkUser(t, s, RolePatient, StatusPending)
	if r, w := standing(t, s, other, t0); r != 0 || w != 0 {
		t.Fatalf("other account: readable %d withdrawn %d", r, w)
	}
}

func renewal(u *User, at time.Time) ClaimRenewal {
	n := mkOutbox(u.ID, "", at)
	n.Kind, n.CreatedAt, n.Reference = "claim-link", at, "ABC-DEF"
	return ClaimRenewal{UserID: u.ID, Token: mkToken(u, at, 7*24*time.Hour), Notice: n,
		NoticeKind: "claim-link", Since: at.Add(-15 * time.Minute), At: at}
}

func tokenUsed(t *testing.T, s Store, hash []byte) bool {
	t.Helper()
	tok, err := s.ClaimTokenByHash(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	return tok.UsedAt != nil
}

func testRenewClaim(t *testing.T, s Store) {
	ctx := context.Background()
	u := mkUser(t, s, RolePatient, StatusPending)
	old, expired := mkToken(u, t0, time.Hour), mkToken(u, t0.Add(-30*24*time.Hour), time.Hour)
	deliver(t, s, Delivery{ClaimTokens: []ClaimToken{old, expired}})

	at := t0.Add(time.Minute)
	r := renewal(u, at)
	if err := s.RenewClaim(ctx, r); err != nil {
		t.Fatal(err)
	}
	if !tokenUsed(t, s, old.Hash) || !tokenUsed(t, s, expired.Hash) {
		t.Error("the earlier links were not ended")
	}
	if tokenUsed(t, s, r.Token.Hash) {
		t.Error("the new link is already used")
	}
	due, err := s.DueOutbox(ctx, farFuture, 100)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "renewal notice", outboxIDs(due), []string{r.Notice.ID})

	// Within the interval: refused, and nothing changes.
	r2 := renewal(u, at.Add(14*time.Minute))
	if err := s.RenewClaim(ctx, r2); !errors.Is(err, ErrTooSoon) {
		t.Fatalf("second renewal within the interval: %v, want ErrTooSoon", err)
	}
	if _, err := s.ClaimTokenByHash(ctx, r2.Token.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused renewal's token was stored: %v", err)
	}
	if tokenUsed(t, s, r.Token.Hash) {
		t.Error("a refused renewal ended the live link")
	}
	// After it: allowed, and the previous new link ends.
	r3 := renewal(u, at.Add(16*time.Minute))
	if err := s.RenewClaim(ctx, r3); err != nil {
		t.Fatal(err)
	}
	if !tokenUsed(t, s, r.Token.Hash) {
		t.Error("the previous new link still works")
	}

	// An account that is not pending gets nothing.
	active := mkUser(t, s, RolePatient, StatusActive)
	ra := renewal(active, at)
	if err := s.RenewClaim(ctx, ra); !errors.Is(err, ErrNotFound) {
		t.Fatalf("renewal for an active account: %v, want ErrNotFound", err)
	}
	if _, err := s.ClaimTokenByHash(ctx, ra.Token.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("a token was stored for an active account: %v", err)
	}

	// The audit entry commits with the renewal, or the renewal does not.
	failing := renewal(mkUser(t, s, RolePatient, StatusPending), at)
	failing.Audit = func(int64, []byte) ([]AuditRecord, error) {
		return nil, errors.New("cannot seal")
	}
	if err := s.RenewClaim(ctx, failing); err == nil {
		t.Fatal("renewal committed without its audit entry")
	}
	if _, err := s.ClaimTokenByHash(ctx, failing.Token.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("the renewal's token stayed without its entry: %v", err)
	}
}

// Fifty presses at once, on two handles (two nodes), make one new link.
func testRenewClaimConcurrent(t *testing.T, a, b Store) {
	ctx := context.Background()
	u := mkUser(t, a, RolePatient, StatusPending)
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			err := s.RenewClaim(ctx, renewal(u, t0.Add(time.Duration(i)*time.Millisecond)))
			key := "ok"
			if err != nil {
				key = err.Error()
			}
			mu.Lock()
			results[key]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if results["ok"] != 1 || results[ErrTooSoon.Error()] != 49 {
		t.Fatalf("50 concurrent renewals: %v, want 1 ok and 49 too soon", results)
	}
	refs, err := a.NoticeReferences(ctx, u.ID, "", 100)
	if err != nil || len(refs) != 1 {
		t.Fatalf("renewal notices: %+v %v, want 1", refs, err)
	}
}

func testNoticeReferences(t *testing.T, s Store) {
	ctx := context.Background()
	u, sender := mkUser(t, s, RolePatient, StatusActive), mkUser(t, s, RoleStaff, StatusActive)
	m1, m2 := mkMsg(u, sender, t0), mkMsg(u, sender, t0)
	o1, o2, push := mkOutbox(u.ID, m1.ID, t0), mkOutbox(u.ID, m2.ID, t0), mkOutbox(u.ID, m2.ID, t0)
	o1.Reference, o1.CreatedAt = "AAA-AAA", t0
	o2.Reference, o2.CreatedAt = "BBB-BBB", t0.Add(time.Minute)
	push.Kind, push.CreatedAt = "push", t0.Add(2*time.Minute) // no reference
	// A batched notice keeps its reference too.
	m3 := mkMsg(u, sender, t0)
	o3 := mkOutbox(u.ID, m3.ID, t0)
	o3.Reference, o3.CreatedAt, o3.Batch, o3.Window = "CCC-CCC", t0.Add(3*time.Minute), "email:"+u.ID, time.Minute
	deliver(t, s, Delivery{Messages: []Message{m1, m2, m3}, Outbox: []OutboxItem{o1, o2, push, o3}})
	sent(t, s, t0.Add(4*time.Minute), o1.ID)

	refs, err := s.NoticeReferences(ctx, u.ID, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 3 || refs[0].Reference != "CCC-CCC" || refs[1].Reference != "BBB-BBB" || refs[2].Reference != "AAA-AAA" {
		t.Fatalf("references newest first: %+v", refs)
	}
	if refs[2].SentAt == nil || refs[1].SentAt != nil || refs[2].MessageID != m1.ID || refs[2].Kind != o1.Kind {
		t.Errorf("reference details: %+v", refs[2])
	}
	eqTime(t, "created", refs[1].CreatedAt, o2.CreatedAt)
	if refs, err := s.NoticeReferences(ctx, u.ID, "", 1); err != nil || len(refs) != 1 || refs[0].Reference != "CCC-CCC" {
		t.Errorf("limit 1: %+v %v", refs, err)
	}
	if refs, err := s.NoticeReferences(ctx, u.ID, m2.ID, 10); err != nil || len(refs) != 1 || refs[0].Reference != "BBB-BBB" {
		t.Errorf("one message's references: %+v %v", refs, err)
	}
	if refs, err := s.NoticeReferences(ctx, sender.ID, "", 10); err != nil || len(refs) != 0 {
		t.Errorf("another account's references: %+v %v", refs, err)
	}
	// The staff's look-up by reference finds the notice and its account.
	byRef, err := s.NoticesByReference(ctx, "BBB-BBB", 10)
	if err != nil || len(byRef) != 1 || byRef[0].UserID != u.ID || byRef[0].MessageID != m2.ID {
		t.Errorf("NoticesByReference: %+v %v", byRef, err)
	}
	if byRef, err := s.NoticesByReference(ctx, "ZZZ-ZZZ", 10); err != nil || len(byRef) != 0 {
		t.Errorf("an unknown reference: %+v %v", byRef, err)
	}
	if byRef, err := s.NoticesByReference(ctx, "", 10); err != nil || len(byRef) != 0 {
		t.Errorf("the empty reference matched rows without one: %+v %v", byRef, err)
	}
}

// A purge run keeps the spent and expired claim links of an account that
// still waits for its password and has something to read (their page
// offers a new link), and deletes them once nothing is left to read.
func testPurgeKeepsRenewableLinks(t *testing.T, s Store) {
	ctx := context.Background()
	u, sender := mkUser(t, s, RolePatient, StatusPending), mkUser(t, s, RoleStaff, StatusActive)
	m := mkMsg(u, sender, t0) // readable until t0 + 30 days
	expired, replaced := mkToken(u, t0, 7*24*time.Hour), mkToken(u, t0, 7*24*time.Hour)
	deliver(t, s, Delivery{Messages: []Message{m}, ClaimTokens: []ClaimToken{expired, replaced}})
	r := renewal(u, t0.Add(time.Hour)) // ends both earlier links
	if err := s.RenewClaim(ctx, r); err != nil {
		t.Fatal(err)
	}
	// An active account's spent link goes as before.
	active := mkUser(t, s, RolePatient, StatusActive)
	spent := mkToken(active, t0, time.Hour)
	deliver(t, s, Delivery{ClaimTokens: []ClaimToken{spent}})

	if _, err := s.Purge(ctx, PurgePlan{Now: t0.Add(8 * 24 * time.Hour), Batch: 100}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []ClaimToken{expired, replaced, r.Token} {
		if _, err := s.ClaimTokenByHash(ctx, tok.Hash); err != nil {
			t.Errorf("a link of a waiting account with something to read was purged: %v", err)
		}
	}
	if _, err := s.ClaimTokenByHash(ctx, spent.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("an expired link of an active account was kept: %v", err)
	}
	// Day 31: the message expired, nothing to read: the old links go.
	if _, err := s.Purge(ctx, PurgePlan{Now: t0.Add(31 * 24 * time.Hour), Batch: 100}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimTokenByHash(ctx, expired.Hash); !errors.Is(err, ErrNotFound) {
		t.Errorf("a link of an account with nothing to read was kept: %v", err)
	}
}
