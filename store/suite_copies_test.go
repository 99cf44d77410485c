package store

// Issue 13.2/13.3: the sender's and reviewers' sealed copies of a message.
// Part of the backend suite (both backends run it).

import (
	"bytes"
	"context"
	"testing"
)

func mkCopy(id, kind string, n int) MessageCopy {
	return MessageCopy{MessageID: id, Kind: kind, KeyPackets: []byte("kp-" + kind + id), Data: []byte("ct-" + kind + id), Attachments: n}
}

func testMessageCopies(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	rcpt := mkUser(t, s, RolePatient, StatusActive)

	// A held message and a delivered one, each with its copies, in the
	// delivery's transaction.
	held := mkMsg(rcpt, sender, t0)
	held.State = StateQuarantined
	plain := mkMsg(rcpt, sender, t0)
	deliver(t, s, Delivery{Messages: []Message{held, plain}, Copies: []MessageCopy{
		mkCopy(held.ID, CopySender, 2), mkCopy(held.ID, CopyReview, 2), mkCopy(plain.ID, CopySender, 0)}})

	got, err := s.MessageCopies(ctx, CopySender, held.ID, plain.ID, "no-such-message")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[held.ID].Data, []byte("ct-sender"+held.ID)) || got[held.ID].Attachments != 2 ||
		!bytes.Equal(got[plain.ID].KeyPackets, []byte("kp-sender"+plain.ID)) {
		t.Fatalf("sender copies: %+v", got)
	}
	if none, err := s.MessageCopies(ctx, CopySender); err != nil || len(none) != 0 {
		t.Errorf("no ids: %v %v", none, err)
	}

	// Reading the review copy commits its entry in the same transaction:
	// a failing audit step reads nothing.
	c, err := s.ReviewCopy(ctx, held.ID, (&chained{action: "quarantine.preview", ids: []string{held.ID}, fail: errInjected}).fn)
	wantErr(t, "ReviewCopy with a failing audit step", err, errInjected)
	if c != nil || entriesFor(t, s, "quarantine.preview", held.ID) != 0 {
		t.Errorf("failed preview: copy %v, entries %d", c, entriesFor(t, s, "quarantine.preview", held.ID))
	}
	c, err = s.ReviewCopy(ctx, held.ID, (&chained{action: "quarantine.preview", ids: []string{held.ID}}).fn)
	if err != nil || !bytes.Equal(c.Data, []byte("ct-review"+held.ID)) || c.Attachments != 2 {
		t.Fatalf("review copy: %+v %v", c, err)
	}
	if n := entriesFor(t, s, "quarantine.preview", held.ID); n != 1 {
		t.Errorf("%d quarantine.preview entries", n)
	}
	// A message that is not held has no review copy to read; nothing is
	// recorded for the attempt.
	a := &chained{action: "quarantine.preview", ids: []string{plain.ID}}
	_, err = s.ReviewCopy(ctx, plain.ID, a.fn)
	wantErr(t, "ReviewCopy of a delivered message", err, ErrNotFound)
	if a.calls != 0 || entriesFor(t, s, "quarantine.preview", plain.ID) != 0 {
		t.Errorf("not-held preview recorded an entry")
	}

	// Deciding the hold deletes the reviewers' copy in its transaction;
	// the sender keeps theirs.
	if err := s.DecideQuarantine(ctx, held.ID, StateDelivered, Delivery{
		Audit: (&chained{action: "quarantine.approve", ids: []string{held.ID}}).fn}); err != nil {
		t.Fatal(err)
	}
	if rv, err := s.MessageCopies(ctx, CopyReview, held.ID); err != nil || len(rv) != 0 {
		t.Errorf("review copy after the decision: %v %v", rv, err)
	}
	_, err = s.ReviewCopy(ctx, held.ID, (&chained{action: "quarantine.preview", ids: []string{held.ID}}).fn)
	wantErr(t, "ReviewCopy after the decision", err, ErrNotFound)
	if sc, _ := s.MessageCopies(ctx, CopySender, held.ID); len(sc) != 1 {
		t.Errorf("the sender's copy went with the decision")
	}

	// A delivery whose copy cannot be written commits nothing.
	dup := mkMsg(rcpt, sender, t0)
	err = s.Deliver(ctx, Delivery{Messages: []Message{dup}, Copies: []MessageCopy{mkCopy(dup.ID, CopySender, 0), mkCopy(dup.ID, CopySender, 0)}})
	if err == nil {
		t.Fatal("a delivery with two sender copies of one message committed")
	}
	if _, err := s.MessageMeta(ctx, dup.ID); err != ErrNotFound {
		t.Errorf("the message of a failed delivery: %v", err)
	}

	// The purge of a recalled message deletes its copies with its content.
	if err := s.Recall(ctx, plain.ID, sender.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeCiphertext(ctx, t0, nil); err != nil {
		t.Fatal(err)
	}
	if sc, err := s.MessageCopies(ctx, CopySender, plain.ID); err != nil || len(sc) != 0 {
		t.Errorf("copies after the purge: %v %v", sc, err)
	}
}
