// Package events carries live, PHI-free events between gateway nodes: "this
// session ended", "a new message is waiting for this user". An event names
// only opaque ids (user, session, message) and a short reason code, never an
// address, a name or a subject (DESIGN.md invariant 1); open portal pages
// learn of them over the websocket, which listens on a Bus.
//
// Delivery is best effort and at most once: a subscriber gets every event
// published after its Subscribe returned, unless it falls behind by more
// than its buffer, in which case events are dropped for it (a publisher is
// never blocked by a slow subscriber). Pages therefore treat an event as a
// hint to reload, never as the only source of truth.
package events

import (
	"context"
	"sync"
)

// Event is one live event. Every field is an opaque id or a code.
type Event struct {
	Kind      string `json:"kind"`
	UserID    string `json:"user_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Reason    string `json:"reason,omitempty"`
	MessageID string `json:"message_id,omitempty"`
}

// Kinds of events.
const (
	// SessionEnded: SessionID of UserID is gone, for Reason (see the
	// session package's reasons).
	SessionEnded = "session-ended"
	// NewMessage: MessageID is waiting for UserID.
	NewMessage = "new-message"
)

// Bus delivers events to every subscriber, on every node sharing it.
type Bus interface {
	// Publish sends e to all current subscribers. It never waits for a
	// slow subscriber.
	Publish(ctx context.Context, e Event) error
	// Subscribe returns a channel with every event published after
	// Subscribe returns, and a function that unsubscribes and closes the
	// channel (safe to call more than once). The subscription also ends,
	// and the channel is closed, when ctx is done.
	Subscribe(ctx context.Context) (<-chan Event, func())
}

// SubscriberBuffer is how many events a subscriber may fall behind before
// further events are dropped for it.
const SubscriberBuffer = 64

// fanout hands events to local subscribers without ever blocking.
type fanout struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch   chan Event
	once sync.Once
}

// add registers a subscriber; ctx ending or the returned func removes it.
// onRemove runs (outside the lock) after a subscriber was removed.
func (f *fanout) add(ctx context.Context, onRemove func()) (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, SubscriberBuffer)}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	if f.subs == nil {
		f.subs = map[*subscriber]struct{}{}
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()

	remove := func() {
		s.once.Do(func() {
			f.mu.Lock()
			_, present := f.subs[s]
			if present {
				delete(f.subs, s)
				close(s.ch)
			}
			f.mu.Unlock()
			if present && onRemove != nil {
				onRemove()
			}
		})
	}
	// No goroutine waits on ctx: AfterFunc runs remove only if ctx ends.
	stop := context.AfterFunc(ctx, remove)
	cancel := func() {
		stop()
		remove()
	}
	return s.ch, cancel
}

func (f *fanout) send(e Event) { f.sendIf(nil, e) }

// sendIf sends e if ok (checked under the lock) is nil or true.
func (f *fanout) sendIf(ok func() bool, e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok != nil && !ok() {
		return
	}
	for s := range f.subs {
		select {
		case s.ch <- e:
		default: // this subscriber is behind: drop, never block
		}
	}
}

func (f *fanout) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// closeAll ends every subscription and refuses new ones.
func (f *fanout) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.subs {
		delete(f.subs, s)
		close(s.ch)
	}
}

// Memory is the in-process Bus (one node).
type Memory struct {
	f fanout
}

func NewMemory() *Memory { return &Memory{} }

func (m *Memory) Publish(ctx context.Context, e Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.f.send(e)
	return nil
}

func (m *Memory) Subscribe(ctx context.Context) (<-chan Event, func()) {
	return m.f.add(ctx, nil)
}

// Close ends every subscription; later Subscribes get a closed channel.
func (m *Memory) Close() error {
	m.f.closeAll()
	return nil
}
