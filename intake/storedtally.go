package intake

import (
	"context"
	"sync"
	"time"
)

// storedTally remembers each sender's stored bytes between store queries.
// StoredBytes sums every unpurged copy the sender has, which grows with
// what the account has sent; asking it twice per message (MAIL and DATA)
// made intake slower the longer a busy account had been sending. The
// figure is read from the store at most once per tallyFresh per sender,
// and copies accepted on this node in between are added to it. Purges are
// only seen at the next read, so the quota errs towards refusing, never
// towards letting more through (other nodes' deliveries are seen then too,
// within the bound docs/configuration.md states for the stored quota).
type storedTally struct {
	mu sync.Mutex
	m  map[string]tallyEntry
	// reading holds the store reads under way, per sender: callers that
	// find one wait for its figure instead of starting their own (issue
	// 12.5: on a store of 100,000 messages from one sender, every
	// concurrent MAIL and DATA ran the SUM at once whenever the figure
	// went stale, and intake fell from about 100 to 3 msgs/s).
	reading map[string]*tallyRead
}

// tallyRead is one store read of a sender's stored bytes; done is closed
// when bytes and err are set.
type tallyRead struct {
	done  chan struct{}
	bytes int64
	err   error
}

type tallyEntry struct {
	bytes int64
	read  time.Time
}

const (
	tallyFresh = 30 * time.Second
	// tallyMax bounds the map; past it the tally starts afresh, which only
	// costs one store read per sender.
	tallyMax = 10000
)

// get returns the sender's stored bytes, reading the store when the tally
// has no fresh figure.
func (t *storedTally) get(ctx context.Context, src StoredBytes, senderID string, now time.Time) (int64, error) {
	t.mu.Lock()
	e, ok := t.m[senderID]
	t.mu.Unlock()
	if ok && now.Sub(e.read) < tallyFresh && !now.Before(e.read) {
		return e.bytes, nil
	}
	t.mu.Lock()
	if r, ok := t.reading[senderID]; ok {
		t.mu.Unlock()
		select {
		case <-r.done:
			return r.bytes, r.err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	r := &tallyRead{done: make(chan struct{})}
	if t.reading == nil {
		t.reading = make(map[string]*tallyRead)
	}
	t.reading[senderID] = r
	t.mu.Unlock()
	// The figure serves every waiting caller: one client going away must
	// not fail the others.
	r.bytes, r.err = src.StoredBytes(context.WithoutCancel(ctx), senderID)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.reading, senderID)
	close(r.done)
	if r.err != nil {
		return 0, r.err
	}
	if t.m == nil || len(t.m) >= tallyMax {
		t.m = make(map[string]tallyEntry)
	}
	t.m[senderID] = tallyEntry{bytes: r.bytes, read: now}
	return r.bytes, nil
}

// add counts bytes just committed for the sender into a fresh figure.
func (t *storedTally) add(senderID string, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[senderID]; ok {
		e.bytes += n
		t.m[senderID] = e
	}
}
