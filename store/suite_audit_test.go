package store

// Issue 9.2: a PHI-bearing change and the audit entries that record it
// commit in one transaction, or neither does. Part of the backend suite.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var errInjected = errors.New("injected failure after the insert")

// chained returns an AuditFunc that seals one record per object id on the
// head it is given, chained like package audit does (MAC over the previous
// MAC), and remembers the head it last saw.
type chained struct {
	action string
	ids    []string
	fail   error // returned instead of records: a failure after the change's inserts
	calls  int
}

func (c *chained) fn(head int64, prev []byte) ([]AuditRecord, error) {
	c.calls++
	if c.fail != nil {
		return nil, c.fail
	}
	out := make([]AuditRecord, len(c.ids))
	for i, id := range c.ids {
		seq := head + int64(i) + 1
		mac := sha256.Sum256(append(append([]byte{}, prev...), fmt.Sprint(seq, id)...))
		out[i] = AuditRecord{Seq: seq, At: t0, Actor: "tester", Action: c.action, ObjectType: "message",
			ObjectID: id, Outcome: "ok", MAC: mac[:]}
		prev = mac[:]
	}
	return out, nil
}

func auditOf(t *testing.T, s Store) AuditStore {
	t.Helper()
	as, ok := s.(AuditStore)
	if !ok {
		t.Fatal("backend has no audit trail")
	}
	return as
}

// entriesFor returns the entries with action on object id.
func entriesFor(t *testing.T, s Store, action, id string) int {
	t.Helper()
	rs, err := auditOf(t, s).ListAudit(context.Background(), AuditFilter{Action: action, ObjectID: id, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	return len(rs)
}

func head(t *testing.T, s Store) int64 {
	t.Helper()
	seq, _, err := auditOf(t, s).AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// checkChain asserts the trail is numbered 1..n without gaps and that each
// MAC is the one chained sealed on its predecessor.
func checkChain(t *testing.T, s Store) int {
	t.Helper()
	rs, err := auditOf(t, s).ListAudit(context.Background(), AuditFilter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var prev []byte
	for i, r := range rs {
		if r.Seq != int64(i+1) {
			t.Fatalf("entry %d numbered %d", i+1, r.Seq)
		}
		mac := sha256.Sum256(append(append([]byte{}, prev...), fmt.Sprint(r.Seq, r.ObjectID)...))
		if string(mac[:]) != string(r.MAC) {
			t.Fatalf("entry %d not chained on %d", r.Seq, r.Seq-1)
		}
		prev = r.MAC
	}
	return len(rs)
}

func testAuditedDeliver(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	rcpt := mkUser(t, s, RolePatient, StatusActive)

	// Success: the message and its entry, in one commit.
	m := mkMsg(rcpt, sender, t0)
	ok := &chained{action: "message.accept", ids: []string{m.ID}}
	if err := s.Deliver(ctx, Delivery{Messages: []Message{m}, Outbox: []OutboxItem{mkOutbox(rcpt.ID, m.ID, t0)}, Audit: ok.fn}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMessage(ctx, m.ID); err != nil {
		t.Fatalf("message not stored: %v", err)
	}
	if n := entriesFor(t, s, "message.accept", m.ID); n != 1 {
		t.Fatalf("%d message.accept entries, want 1", n)
	}

	// A failure after the message's insert (in the audit step): neither
	// the message, its notice nor an entry remains.
	before := head(t, s)
	m2 := mkMsg(rcpt, sender, t0)
	ob := mkOutbox(rcpt.ID, m2.ID, t0)
	bad := &chained{action: "message.accept", ids: []string{m2.ID}, fail: errInjected}
	wantErr(t, "Deliver with a failing audit step", s.Deliver(ctx, Delivery{Messages: []Message{m2}, Outbox: []OutboxItem{ob}, Audit: bad.fn}), errInjected)
	wantErr(t, "message of the failed delivery", func() error { _, err := s.GetMessage(ctx, m2.ID); return err }(), ErrNotFound)
	due, err := s.DueOutbox(ctx, farFuture, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range due {
		if o.ID == ob.ID {
			t.Error("notice of the failed delivery remains")
		}
	}
	if h := head(t, s); h != before {
		t.Errorf("audit head moved from %d to %d", before, h)
	}

	// Records the store refuses (numbered wrong): neither remains either.
	m3 := mkMsg(rcpt, sender, t0)
	wrong := func(h int64, prev []byte) ([]AuditRecord, error) {
		return []AuditRecord{{Seq: h + 2, At: t0, Actor: "x", Action: "message.accept", Outcome: "ok", MAC: []byte{1}}}, nil
	}
	if err := s.Deliver(ctx, Delivery{Messages: []Message{m3}, Audit: wrong}); err == nil {
		t.Fatal("Deliver accepted a mis-numbered audit record")
	}
	wantErr(t, "message with a mis-numbered entry", func() error { _, err := s.GetMessage(ctx, m3.ID); return err }(), ErrNotFound)

	// A recipient key change fails the delivery and takes its entry along.
	m4 := mkMsg(rcpt, sender, t0)
	m4.KeyFpr = "stale"
	stale := &chained{action: "message.accept", ids: []string{m4.ID}}
	wantErr(t, "Deliver to a stale key", s.Deliver(ctx, Delivery{Messages: []Message{m4}, Audit: stale.fn}), ErrKeyChanged)
	if n := entriesFor(t, s, "message.accept", m4.ID); n != 0 {
		t.Errorf("%d entries for a delivery that failed", n)
	}

	// Group commit: concurrent deliveries, some failing, share
	// transactions; every stored message has exactly one entry, the failed
	// ones none, and the chain has no gap.
	const n = 40
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := mkMsg(rcpt, sender, t0)
			ids[i] = m.ID
			c := &chained{action: "message.accept", ids: []string{m.ID}}
			if i%5 == 0 {
				c.fail = errInjected
			}
			errs[i] = s.Deliver(ctx, Delivery{Messages: []Message{m}, Audit: c.fn})
		}()
	}
	wg.Wait()
	for i, id := range ids {
		_, gerr := s.GetMessage(ctx, id)
		stored, entries := gerr == nil, entriesFor(t, s, "message.accept", id)
		switch {
		case i%5 == 0 && (errs[i] == nil || stored || entries != 0):
			t.Errorf("failed delivery %d: err %v, stored %v, entries %d", i, errs[i], stored, entries)
		case i%5 != 0 && (errs[i] != nil || !stored || entries != 1):
			t.Errorf("delivery %d: err %v, stored %v, entries %d", i, errs[i], stored, entries)
		}
	}
	checkChain(t, s)
}

func testAuditedChanges(t *testing.T, s Store) {
	ctx := context.Background()

	// Claim: a failing audit step leaves the account pending and its
	// token unspent; then the claim and its entry commit together.
	f := setupClaim(t, s, 7*24*time.Hour)
	before := snapshot(t, s, f.users(), f.tokens())
	c := f.claim(t, s, t0.Add(time.Hour))
	c.Audit = (&chained{action: "account.claim", ids: []string{f.p.ID}, fail: errInjected}).fn
	wantErr(t, "Claim with a failing audit step", s.Claim(ctx, c), errInjected)
	if after := snapshot(t, s, f.users(), f.tokens()); after != before {
		t.Errorf("failed claim changed state:\nbefore %s\nafter  %s", before, after)
	}
	c.Audit = (&chained{action: "account.claim", ids: []string{f.p.ID}}).fn
	if err := s.Claim(ctx, c); err != nil {
		t.Fatal(err)
	}
	f.checkClaimed(t, s, c)
	if n := entriesFor(t, s, "account.claim", f.p.ID); n != 1 {
		t.Errorf("%d account.claim entries", n)
	}

	sender := mkUser(t, s, RoleStaff, StatusActive)
	rcpt := mkUser(t, s, RolePatient, StatusActive)

	// Password reset (a new key for the account).
	rt := mkToken(rcpt, t0, time.Hour)
	rt.Kind = TokenReset
	if err := s.AddToken(ctx, rt); err != nil {
		t.Fatal(err)
	}
	r := Reset{UserID: rcpt.ID, TokenHash: rt.Hash, NewKeyFpr: "reset-fpr", PublicKey: []byte("pub"),
		PrivateKeyWrapped: []byte("wrapped"), PwParams: "p", PwSalt: []byte("s"), PwVerifier: []byte("v"), At: t0.Add(time.Minute),
		Audit: (&chained{action: "account.reset", ids: []string{rcpt.ID}, fail: errInjected}).fn}
	wantErr(t, "Reset with a failing audit step", s.Reset(ctx, r), errInjected)
	if u, _ := s.UserByID(ctx, rcpt.ID); u.KeyFpr != rcpt.KeyFpr {
		t.Errorf("failed reset changed the key to %s", u.KeyFpr)
	}
	r.Audit = (&chained{action: "account.reset", ids: []string{rcpt.ID}}).fn
	if err := s.Reset(ctx, r); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.UserByID(ctx, rcpt.ID); u.KeyFpr != "reset-fpr" || entriesFor(t, s, "account.reset", rcpt.ID) != 1 {
		t.Errorf("reset: key %s, entries %d", u.KeyFpr, entriesFor(t, s, "account.reset", rcpt.ID))
	}
	rcpt.KeyFpr = "reset-fpr" // messages below are sealed to the new key

	// Recall.
	m := mkMsg(rcpt, sender, t0)
	deliver(t, s, Delivery{Messages: []Message{m}})
	wantErr(t, "Recall with a failing audit step",
		s.Recall(ctx, m.ID, sender.ID, (&chained{action: "message.recall", ids: []string{m.ID}, fail: errInjected}).fn), errInjected)
	if g, _ := s.GetMessage(ctx, m.ID); g.State != StateDelivered {
		t.Errorf("failed recall left state %q", g.State)
	}
	if err := s.Recall(ctx, m.ID, sender.ID, (&chained{action: "message.recall", ids: []string{m.ID}}).fn); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.GetMessage(ctx, m.ID); g.State != StateRecalled || entriesFor(t, s, "message.recall", m.ID) != 1 {
		t.Errorf("recall: state %q, entries %d", g.State, entriesFor(t, s, "message.recall", m.ID))
	}

	// Quarantine release and deny.
	for _, state := range []string{StateDelivered, StateDenied} {
		q := mkMsg(rcpt, sender, t0)
		q.State = StateQuarantined
		deliver(t, s, Delivery{Messages: []Message{q}})
		ob := mkOutbox(rcpt.ID, q.ID, t0)
		action := "quarantine." + state
		err := s.DecideQuarantine(ctx, q.ID, state, Delivery{Outbox: []OutboxItem{ob},
			Audit: (&chained{action: action, ids: []string{q.ID}, fail: errInjected}).fn})
		wantErr(t, "DecideQuarantine with a failing audit step", err, errInjected)
		if g, _ := s.GetMessage(ctx, q.ID); g.State != StateQuarantined {
			t.Errorf("failed decision left state %q", g.State)
		}
		if err := s.DecideQuarantine(ctx, q.ID, state, Delivery{Outbox: []OutboxItem{ob},
			Audit: (&chained{action: action, ids: []string{q.ID}}).fn}); err != nil {
			t.Fatal(err)
		}
		if g, _ := s.GetMessage(ctx, q.ID); g.State != state || entriesFor(t, s, action, q.ID) != 1 {
			t.Errorf("decision %s: state %q, entries %d", state, g.State, entriesFor(t, s, action, q.ID))
		}
	}

	// Purge: the builder is told exactly the messages purged.
	var seen []string
	purge := func(fail error) PurgeAudit {
		return func(ids []string) AuditFunc {
			seen = ids
			return (&chained{action: "message.purge", ids: ids, fail: fail}).fn
		}
	}
	now := t0.Add(time.Hour)
	if _, err := s.PurgeCiphertext(ctx, now, purge(errInjected)); !errors.Is(err, errInjected) {
		t.Fatalf("purge with a failing audit step: %v", err)
	}
	if g, _ := s.GetMessage(ctx, m.ID); len(g.Body) == 0 {
		t.Error("failed purge emptied the recalled message")
	}
	n, err := s.PurgeCiphertext(ctx, now, purge(nil))
	if err != nil || n != len(seen) || n == 0 {
		t.Fatalf("purge: %d, %v (builder saw %d)", n, err, len(seen))
	}
	for _, id := range seen {
		if g, _ := s.GetMessage(ctx, id); len(g.Body) != 0 || entriesFor(t, s, "message.purge", id) != 1 {
			t.Errorf("purged message %s: body %d bytes, entries %d", id, len(g.Body), entriesFor(t, s, "message.purge", id))
		}
	}
	if g, _ := s.GetMessage(ctx, m.ID); len(g.Body) != 0 {
		t.Error("recalled message not purged")
	}
	if n, err := s.PurgeCiphertext(ctx, now, purge(nil)); n != 0 || err != nil {
		t.Errorf("second purge: %d, %v", n, err)
	}
	checkChain(t, s)
}

// conflictOnce fails its first sealing as if another writer had taken the
// sequence numbers (what a server backend reports as a unique(seq)
// violation), then seals normally.
type conflictOnce struct{ chained }

func (c *conflictOnce) fn(head int64, prev []byte) ([]AuditRecord, error) {
	if c.calls == 0 {
		c.calls++
		return nil, errAuditConflict
	}
	return c.chained.fn(head, prev)
}

// testAuditConflictRetry: a transaction whose entries lost their sequence
// numbers runs again, whole, and commits once.
func testAuditConflictRetry(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	rcpt := mkUser(t, s, RolePatient, StatusActive)
	m := mkMsg(rcpt, sender, t0)
	c := &conflictOnce{chained{action: "message.accept", ids: []string{m.ID}}}
	if err := s.Deliver(ctx, Delivery{Messages: []Message{m}, Audit: c.fn}); err != nil {
		t.Fatalf("Deliver after an audit conflict: %v", err)
	}
	if c.calls != 2 || entriesFor(t, s, "message.accept", m.ID) != 1 {
		t.Errorf("delivery: sealed %d times, %d entries", c.calls, entriesFor(t, s, "message.accept", m.ID))
	}
	if _, err := s.GetMessage(ctx, m.ID); err != nil {
		t.Errorf("message after the retried delivery: %v", err)
	}
	r := &conflictOnce{chained{action: "message.recall", ids: []string{m.ID}}}
	if err := s.Recall(ctx, m.ID, sender.ID, r.fn); err != nil {
		t.Fatalf("Recall after an audit conflict: %v", err)
	}
	if r.calls != 2 || entriesFor(t, s, "message.recall", m.ID) != 1 {
		t.Errorf("recall: sealed %d times, %d entries", r.calls, entriesFor(t, s, "message.recall", m.ID))
	}
	checkChain(t, s)
}
