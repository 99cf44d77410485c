package audit

// Issue 14.3: audit keys per master-key epoch.

import (
	"bytes"
	"context"
	"testing"
)

func TestKeyEpochs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil) // epoch 1: testMACKey, testEncKey
	fill(t, e.tr, 5)
	// The rotation's switch entry, the last under the old keys.
	record(t, e.tr, Entry{Actor: "cli:op", Action: KeySwitchAction, ObjectType: "key", ObjectID: "2", Outcome: OK,
		Details: map[string]string{"to_key": "k2"}})
	e.tr.Close()
	mac2, enc2 := bytes.Repeat([]byte{0x33}, 32), bytes.Repeat([]byte{0x44}, 32)
	eps := func(from int64) []KeyEpoch {
		return []KeyEpoch{{Epoch: 1, FromSeq: 1, MAC: testMACKey, Enc: testEncKey}, {Epoch: 2, FromSeq: from, MAC: mac2, Enc: enc2}}
	}
	tr := newTrail(t, e.st, e.cpFile, func(o *Options) { o.Epochs = eps(7) })
	defer tr.Close()
	fill(t, tr, 4) // entries 7..10 under the new keys
	if n, err := tr.Verify(ctx); err != nil || n != 10 {
		t.Fatalf("Verify across epochs: %d, %v", n, err)
	}
	// Details of both epochs decrypt.
	es, err := tr.Search(ctx, Query{Action: "message.read"})
	if err != nil || len(es) != 9 || es[0].Details["n"] != "0" || es[8].Details["n"] != "3" {
		t.Fatalf("Search across epochs: %d %v", len(es), err)
	}
	// The new keys alone do not verify the old entries...
	alone := newTrail(t, e.st, "", func(o *Options) { o.MACKey, o.EncKey = mac2, enc2 })
	defer alone.Close()
	_, err = alone.Verify(ctx)
	wantBroken(t, err, 1, "mac mismatch")
	// ...and an epoch start moved in the database is found: one entry
	// later or earlier, the switch entry is not where it must be.
	for _, from := range []int64{6, 8} {
		moved := newTrail(t, e.st, "", func(o *Options) { o.Epochs = eps(from) })
		_, err := moved.Verify(ctx)
		moved.Close()
		var be *BrokenError
		if err == nil || !asBroken(err, &be) {
			t.Errorf("epoch 2 recorded from %d: Verify passed", from)
		}
	}
	// An epoch recorded past the end of the trail (its switch entry cut
	// off) is found too.
	past := newTrail(t, e.st, "", func(o *Options) { o.Epochs = eps(50) })
	defer past.Close()
	if _, err := past.Verify(ctx); err == nil {
		t.Error("an epoch starting after the trail's end must fail Verify")
	}
	// Checkpoints tagged under either epoch's key are accepted.
	if err := tr.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if cps, err := tr.readCheckpoints(); err != nil || len(cps) < 2 {
		t.Fatalf("checkpoints under both keys: %d %v", len(cps), err)
	}
	if _, err := New(Options{Store: e.st, Epochs: []KeyEpoch{{Epoch: 2, FromSeq: 7, MAC: mac2, Enc: enc2}}}); err == nil {
		t.Error("epochs not starting at entry 1 must be refused")
	}
}

func asBroken(err error, be **BrokenError) bool {
	b, ok := err.(*BrokenError)
	*be = b
	return ok
}
