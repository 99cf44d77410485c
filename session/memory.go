package session

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Memory is the in-process Store (one node). Run Sweep periodically so
// that idle sessions' wrapped keys do not linger and old tombstones are
// forgotten.
type Memory struct {
	// Now is the clock that dates tombstones (time.Now if nil); set it to
	// the Manager's clock in tests.
	Now func() time.Time

	mu     sync.Mutex
	byID   map[string]*Record
	byUser map[string]map[string]struct{}
	// ended remembers ended sessions' ids (nothing else: no key material)
	// with the reason, so a returning browser is told why it was signed
	// out.
	ended map[string]tombstone
}

type tombstone struct {
	reason string
	at     time.Time
}

func NewMemory() *Memory {
	return &Memory{byID: map[string]*Record{}, byUser: map[string]map[string]struct{}{},
		ended: map[string]tombstone{}}
}

func (s *Memory) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

var (
	errIdle     = errors.New("session: idle timeout must be positive")
	errNoReason = errors.New("session: end without a reason")
)

// errFor is what Get says about an id that is not live; s.mu is held.
func (s *Memory) errFor(id string) error {
	if t, ok := s.ended[id]; ok && s.now().Sub(t.at) < TombstoneTTL {
		return &EndedError{Reason: t.reason}
	}
	return ErrNoSession
}

// end deletes a live session and tombstones it; s.mu is held.
func (s *Memory) end(id, reason string, at time.Time) bool {
	r, ok := s.byID[id]
	if !ok {
		return false
	}
	delete(s.byID, id)
	if u := s.byUser[r.UserID]; u != nil {
		delete(u, id)
		if len(u) == 0 {
			delete(s.byUser, r.UserID)
		}
	}
	s.ended[id] = tombstone{reason: reason, at: at}
	return true
}

func (s *Memory) Put(_ context.Context, r Record, idle time.Duration) ([]string, error) {
	if idle <= 0 {
		return nil, errIdle
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var replaced []string
	// Only a complete sign-in replaces the others: a session still waiting
	// for its second factor must not let a password alone sign the owner
	// out everywhere.
	for id := range s.byUser[r.UserID] {
		if r.MFA && id != r.ID && s.end(id, ReasonReplaced, now) {
			replaced = append(replaced, id)
		}
	}
	c := r
	c.WrappedKey = append([]byte(nil), r.WrappedKey...)
	c.SecretHash = append([]byte(nil), r.SecretHash...)
	c.Seal = append([]byte(nil), r.Seal...)
	s.byID[r.ID] = &c
	if s.byUser[r.UserID] == nil {
		s.byUser[r.UserID] = map[string]struct{}{}
	}
	s.byUser[r.UserID][r.ID] = struct{}{}
	return replaced, nil
}

func (s *Memory) Get(_ context.Context, id string) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok {
		return nil, s.errFor(id)
	}
	c := *r
	c.WrappedKey = append([]byte(nil), r.WrappedKey...)
	c.SecretHash = append([]byte(nil), r.SecretHash...)
	c.Seal = append([]byte(nil), r.Seal...)
	return &c, nil
}

func (s *Memory) Touch(_ context.Context, id string, at time.Time, seal []byte, idle time.Duration) error {
	if idle <= 0 {
		return errIdle
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok {
		return s.errFor(id)
	}
	r.LastSeen, r.Seal = at, append([]byte(nil), seal...)
	return nil
}

func (s *Memory) End(_ context.Context, id, reason string) error {
	if reason == "" {
		return errNoReason
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.end(id, reason, s.now()) {
		return s.errFor(id)
	}
	return nil
}

func (s *Memory) EndUser(_ context.Context, userID, reason string) ([]string, error) {
	if reason == "" {
		return nil, errNoReason
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var ids []string
	for id := range s.byUser[userID] {
		if s.end(id, reason, now) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (s *Memory) Count(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID), nil
}

// Sweep ends sessions idle for idle or longer at now (reason "idle"),
// forgets tombstones older than TombstoneTTL, and returns how many
// sessions it ended.
func (s *Memory) Sweep(now time.Time, idle time.Duration) int {
	return len(s.SweepEnded(now, idle))
}

// SweepEnded is Sweep returning the records it ended (user and session
// ids), so the caller can log and announce each idle logoff.
func (s *Memory) SweepEnded(now time.Time, idle time.Duration) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var swept []Record
	for id, r := range s.byID {
		if now.Sub(r.LastSeen) >= idle {
			swept = append(swept, Record{ID: id, UserID: r.UserID})
			s.end(id, ReasonIdle, now)
		}
	}
	for id, t := range s.ended {
		if now.Sub(t.at) >= TombstoneTTL {
			delete(s.ended, id)
		}
	}
	return swept
}
