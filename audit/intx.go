package audit

import (
	"context"
	"errors"

	"github.com/phigate/phigate/store"
)

// Batch is audit entries that a store transaction commits itself, in the
// same transaction as the change they record (issue 9.2: a message and its
// message.accept entry exist together or not at all). Make one with
// Prepare, hand Func() to the store operation, and call Committed once it
// returned nil, so the trail's checkpoints and the gateway's alerts learn
// of the entries.
//
// The entries are sealed (numbered, encrypted, chained) only inside the
// transaction, on the head read there under the write lock; a retried
// transaction seals them again.
type Batch struct {
	trail     *Trail
	fallback  Recorder // a recorder that cannot seal: Committed records through it
	entries   []Entry
	details   [][]byte
	first     int64 // numbers of the last sealing
	lastMAC   []byte
	observers []func(context.Context, Entry)
}

// Sealer is a Recorder that can also prepare entries for a store
// transaction (a *Trail, or the gateway's fan-out around it).
type Sealer interface {
	Recorder
	Prepare(ctx context.Context, entries ...Entry) (*Batch, error)
}

// Prepare checks entries and fills in their time and correlation as Record
// does; they are sealed when the store calls Func. After Close it refuses,
// like Record.
func (t *Trail) Prepare(ctx context.Context, entries ...Entry) (*Batch, error) {
	t.mu.RLock()
	closed := t.closed
	t.mu.RUnlock()
	if closed {
		return nil, ErrClosed // as Record: Close wrote the last checkpoint
	}
	b := &Batch{trail: t, entries: make([]Entry, len(entries)), details: make([][]byte, len(entries))}
	for i, e := range entries {
		var err error
		if b.entries[i], b.details[i], err = t.normalize(ctx, e); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Prepare makes a Batch through rec: in-transaction when rec is a Sealer.
// Any other recorder (a test's, Discard) gets the entries through Record
// after the commit, as before; a nil rec gives a nil Batch, which records
// nothing.
func Prepare(ctx context.Context, rec Recorder, entries ...Entry) (*Batch, error) {
	switch r := rec.(type) {
	case nil:
		return nil, nil
	case Sealer:
		return r.Prepare(ctx, entries...)
	default:
		return &Batch{fallback: rec, entries: entries}, nil
	}
}

// Func is what the store operation takes; nil when the entries are not
// sealed in the transaction (nil or fallback batch).
func (b *Batch) Func() store.AuditFunc {
	if b == nil || b.trail == nil {
		return nil
	}
	return b.seal
}

func (b *Batch) seal(headSeq int64, headMAC []byte) ([]store.AuditRecord, error) {
	recs := make([]store.AuditRecord, len(b.entries))
	prev := headMAC
	for i, e := range b.entries {
		rec, err := b.trail.seal(e, b.details[i], headSeq+int64(i)+1, prev)
		if err != nil {
			return nil, err
		}
		recs[i], prev = rec, rec.MAC
	}
	b.first, b.lastMAC = headSeq+1, prev
	return recs, nil
}

// Observe asks for f to be called with each entry once committed (the
// gateway's alerts).
func (b *Batch) Observe(f func(context.Context, Entry)) {
	if b != nil {
		b.observers = append(b.observers, f)
	}
}

// Committed is called after the store operation given Func returned nil.
// It tells the trail (checkpoints) and the observers; a fallback batch
// records its entries now, and its error is the only one returned.
func (b *Batch) Committed(ctx context.Context) error {
	if b == nil {
		return nil
	}
	if b.fallback != nil {
		var errs []error
		for _, e := range b.entries {
			errs = append(errs, b.fallback.Record(ctx, e))
		}
		return errors.Join(errs...)
	}
	if b.first == 0 {
		return errors.New("audit: batch committed but never sealed")
	}
	last := b.first + int64(len(b.entries)) - 1
	b.trail.noteCommitted(b.first, last, b.lastMAC)
	for i, e := range b.entries {
		e.Seq = b.first + int64(i)
		for _, f := range b.observers {
			f(ctx, e)
		}
	}
	return nil
}

// Entries returns the batch's entries (for tests and logs).
func (b *Batch) Entries() []Entry {
	if b == nil {
		return nil
	}
	return b.entries
}
