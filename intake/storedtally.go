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
	n, err := src.StoredBytes(ctx, senderID)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= tallyMax {
		t.m = make(map[string]tallyEntry)
	}
	t.m[senderID] = tallyEntry{bytes: n, read: now}
	return n, nil
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
