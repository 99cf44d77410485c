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
	// SenderID is the account that sent MessageID (message events): its
	// Sent page hears the change too. UserID is then the recipient, or
	// empty when the recipient must not hear of it (held in quarantine).
	SenderID string `json:"sender_id,omitempty"`
}

// Kinds of events.
const (
	// SessionEnded: SessionID of UserID is gone, for Reason (see the
	// session package's reasons).
	SessionEnded = "session-ended"
	// NewMessage: MessageID is waiting for UserID (accepted, or released
	// from quarantine), sent by SenderID.
	NewMessage = "new-message"
	// MessageHeld: SenderID's MessageID was accepted into quarantine
	// (UserID is empty: the recipient hears nothing until it is released).
	MessageHeld = "message-held"
	// MessageDenied: an admin denied SenderID's held MessageID.
	MessageDenied = "message-denied"
	// MessageRead: UserID opened MessageID for the first time.
	MessageRead = "message-read"
	// MessageRecalled: SenderID withdrew MessageID.
	MessageRecalled = "message-recalled"
	// MessagePurged: MessageID's content is gone (expired, recalled or
	// denied, then purged).
	MessagePurged = "message-purged"
)

// MessageChanged returns the event of a change to message id (one of the
// message kinds above), for its recipient and its sender; recipient is
// empty when the recipient must not hear of it.
func MessageChanged(kind, id, recipient, sender string) Event {
	return Event{Kind: kind, MessageID: id, UserID: recipient, SenderID: sender}
}

// Publisher is what publishes events: a Bus, or nil for none.
type Publisher interface {
	Publish(ctx context.Context, e Event) error
}

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
	// SubscribeUser is Subscribe for the events of one account only:
	// those whose UserID or SenderID is userID. A node with many open
	// pages hands each event only to the pages of the accounts it names,
	// not to all of them.
	SubscribeUser(ctx context.Context, userID string) (<-chan Event, func())
}

// SubscriberBuffer is how many events a subscriber may fall behind before
// further events are dropped for it.
const SubscriberBuffer = 64

// fanout hands events to local subscribers without ever blocking.
type fanout struct {
	mu     sync.Mutex
	all    map[*subscriber]struct{}            // every event
	byUser map[string]map[*subscriber]struct{} // one account's events
	n      int
	closed bool
}

type subscriber struct {
	ch   chan Event
	user string // "" for every event
	once sync.Once
}

// add registers a subscriber (for user's events, or every event if user is
// ""); ctx ending or the returned func removes it. onRemove runs (outside
// the lock) after a subscriber was removed.
func (f *fanout) add(ctx context.Context, user string, onRemove func()) (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, SubscriberBuffer), user: user}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	f.set(s).add(s)
	f.n++
	f.mu.Unlock()

	remove := func() {
		s.once.Do(func() {
			f.mu.Lock()
			present := f.remove(s)
			if present {
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

// subSet is one set of subscribers; f.mu is held.
type subSet map[*subscriber]struct{}

// set returns s's set, creating it; f.mu is held.
func (f *fanout) set(s *subscriber) subSet {
	if s.user == "" {
		if f.all == nil {
			f.all = map[*subscriber]struct{}{}
		}
		return f.all
	}
	if f.byUser == nil {
		f.byUser = map[string]map[*subscriber]struct{}{}
	}
	set := f.byUser[s.user]
	if set == nil {
		set = map[*subscriber]struct{}{}
		f.byUser[s.user] = set
	}
	return set
}

func (set subSet) add(s *subscriber) { set[s] = struct{}{} }

// remove deletes s, and a user's set once empty; false if s was not there
// (closeAll got there first). f.mu is held.
func (f *fanout) remove(s *subscriber) bool {
	set := subSet(f.all)
	if s.user != "" {
		set = f.byUser[s.user]
	}
	if _, ok := set[s]; !ok {
		return false
	}
	delete(set, s)
	if s.user != "" && len(set) == 0 {
		delete(f.byUser, s.user)
	}
	f.n--
	return true
}

func (f *fanout) send(e Event) { f.sendIf(nil, e) }

// sendIf sends e if ok (checked under the lock) is nil or true: to every
// all-events subscriber and to those of the accounts e names.
func (f *fanout) sendIf(ok func() bool, e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok != nil && !ok() {
		return
	}
	deliver(f.all, e)
	if e.UserID != "" {
		deliver(f.byUser[e.UserID], e)
	}
	if e.SenderID != "" && e.SenderID != e.UserID {
		deliver(f.byUser[e.SenderID], e)
	}
}

func deliver(set map[*subscriber]struct{}, e Event) {
	for s := range set {
		select {
		case s.ch <- e:
		default: // this subscriber is behind: drop, never block
		}
	}
}

func (f *fanout) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// closeAll ends every subscription and refuses new ones.
func (f *fanout) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for s := range f.all {
		close(s.ch)
	}
	for _, set := range f.byUser {
		for s := range set {
			close(s.ch)
		}
	}
	f.all, f.byUser, f.n = nil, nil, 0
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
	return m.f.add(ctx, "", nil)
}

func (m *Memory) SubscribeUser(ctx context.Context, userID string) (<-chan Event, func()) {
	return m.f.add(ctx, userID, nil)
}

// Close ends every subscription; later Subscribes get a closed channel.
func (m *Memory) Close() error {
	m.f.closeAll()
	return nil
}
