package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/store"
)

// TestBatchInStoreTransaction: entries sealed inside store transactions
// (Batch) and entries the trail commits itself interleave into one valid
// chain; the trail's checkpoints and the observers learn of the batches.
func TestBatchInStoreTransaction(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CheckpointEvery = 10 })
	ctx := context.Background()
	var (
		mu       sync.Mutex
		observed []Entry
	)
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				errs[i] = e.tr.Record(ctx, Entry{Actor: "trail", Action: "message.read", ObjectID: fmt.Sprint(i), Outcome: OK})
				return
			}
			b, err := e.tr.Prepare(ctx,
				Entry{Actor: "tx", Action: "message.accept", ObjectType: "message", ObjectID: fmt.Sprint(i), Outcome: OK,
					Details: map[string]string{"recipient": "pat@example.net"}},
				Entry{Actor: "tx", Action: "message.relay", ObjectType: "recipient", ObjectID: fmt.Sprint(i), Outcome: "queued"})
			if err != nil {
				errs[i] = err
				return
			}
			b.Observe(func(_ context.Context, e Entry) { mu.Lock(); observed = append(observed, e); mu.Unlock() })
			if errs[i] = e.st.Deliver(ctx, store.Delivery{Audit: b.Func()}); errs[i] == nil {
				errs[i] = b.Committed(ctx)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want := int64(n/2 + n) // 15 Records, 15 batches of 2
	if got, err := e.tr.Verify(ctx); err != nil || got != want {
		t.Fatalf("Verify = %d, %v; want %d", got, err, want)
	}
	if len(observed) != n {
		t.Fatalf("observers saw %d entries, want %d", len(observed), n)
	}
	for _, o := range observed {
		es, err := e.tr.Search(ctx, Query{Action: o.Action, ObjectID: o.ObjectID})
		if err != nil || len(es) != 1 || es[0].Seq != o.Seq {
			t.Errorf("observed %s %s as seq %d; stored: %+v, %v", o.Action, o.ObjectID, o.Seq, es, err)
		}
		if o.Action == "message.accept" && es[0].Details["recipient"] != "pat@example.net" {
			t.Errorf("details of a batch entry: %+v", es[0].Details)
		}
	}
	// Checkpoints counted the batch entries too: the last one covers the
	// last multiple of CheckpointEvery without a Close.
	cp, err := e.tr.LastCheckpoint()
	if err != nil || cp == nil || cp.Seq < want/10*10 {
		t.Fatalf("last checkpoint %+v, %v; want seq >= %d", cp, err, want/10*10)
	}
}

// TestBatchRolledBack: when the store's transaction fails after sealing,
// no entry exists and the chain stays valid for the next writer.
func TestBatchRolledBack(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	fill(t, e.tr, 3)
	b, err := e.tr.Prepare(ctx, Entry{Actor: "tx", Action: "message.accept", ObjectType: "message", ObjectID: "m1", Outcome: OK})
	if err != nil {
		t.Fatal(err)
	}
	// A message for a recipient that does not exist: the insert fails (a
	// foreign key), the audit step had sealed nothing yet or is undone.
	bad := store.Message{ID: "m1", RecipientID: "nobody", SenderID: "nobody", KeyFpr: "x", CreatedAt: time.Now(), ExpiresAt: time.Now()}
	if err := e.st.Deliver(ctx, store.Delivery{Messages: []store.Message{bad}, Audit: b.Func()}); err == nil {
		t.Fatal("Deliver of a message to nobody succeeded")
	}
	if es, _ := e.tr.Search(ctx, Query{Action: "message.accept"}); len(es) != 0 {
		t.Fatalf("entry of a failed transaction: %+v", es)
	}
	record(t, e.tr, Entry{Actor: "trail", Action: "after", Outcome: OK})
	if n, err := e.tr.Verify(ctx); err != nil || n != 4 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

type listRecorder struct{ got []Entry }

func (l *listRecorder) Record(_ context.Context, e Entry) error { l.got = append(l.got, e); return nil }

// TestPrepareFallback: a recorder that cannot seal gets the entries after
// the commit through Record; nil records nothing; bad entries are refused
// before any transaction.
func TestPrepareFallback(t *testing.T) {
	ctx := context.Background()
	var l listRecorder
	b, err := Prepare(ctx, &l, Entry{Actor: "a", Action: "x", Outcome: OK})
	if err != nil || b.Func() != nil {
		t.Fatalf("fallback batch: %v, func %v", err, b.Func() != nil)
	}
	if err := b.Committed(ctx); err != nil || len(l.got) != 1 || l.got[0].Action != "x" {
		t.Fatalf("fallback Committed: %v, %+v", err, l.got)
	}
	if b, err := Prepare(ctx, nil, Entry{Actor: "a", Action: "x", Outcome: OK}); b != nil || err != nil || b.Func() != nil || b.Committed(ctx) != nil {
		t.Fatalf("nil recorder: %v, %v", b, err)
	}
	e := newEnv(t, nil)
	if _, err := Prepare(ctx, e.tr, Entry{Actor: "pat@example.net", Action: "x", Outcome: OK}); err == nil {
		t.Fatal("an address in a plaintext field was accepted")
	}
	e.tr.Close()
	if _, err := Prepare(ctx, e.tr, Entry{Actor: "a", Action: "x", Outcome: OK}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Prepare after Close: %v", err)
	}
}
