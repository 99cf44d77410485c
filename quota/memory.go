package quota

import (
	"context"
	"sync"
	"time"
)

// memory keeps the counters in this process. Each account holds at most
// Concurrent slots and MessagesPerHour stamps, and an account with neither
// is forgotten, so memory is bounded by the accounts that are sending.
type memory struct {
	cfg Config
	mu  sync.Mutex
	acc map[string]*usage
}

type usage struct {
	slots map[string]time.Time // transaction id -> lease end
	sent  map[string]time.Time // transaction id -> when reserved
}

// NewMemory returns Limits counted in this process; now is the clock
// (time.Now when nil).
func NewMemory(cfg Config, now func() time.Time) *Limits {
	cfg = cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	return &Limits{cfg: cfg, now: now, b: &memory{cfg: cfg, acc: map[string]*usage{}}}
}

func (m *memory) begin(_ context.Context, account, id string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.acc[account]
	if u == nil {
		u = &usage{slots: map[string]time.Time{}, sent: map[string]time.Time{}}
		m.acc[account] = u
	}
	u.prune(now)
	if m.cfg.Concurrent > 0 && len(u.slots) >= m.cfg.Concurrent {
		return &BusyError{Limit: m.cfg.Concurrent}
	}
	if m.cfg.MessagesPerHour > 0 && len(u.sent) >= m.cfg.MessagesPerHour {
		oldest := now
		for _, at := range u.sent {
			if at.Before(oldest) {
				oldest = at
			}
		}
		return &RateError{Limit: m.cfg.MessagesPerHour, RetryAfter: oldest.Add(Window).Sub(now)}
	}
	u.slots[id] = now.Add(m.cfg.Lease)
	if m.cfg.MessagesPerHour > 0 {
		u.sent[id] = now
	}
	return nil
}

func (m *memory) end(_ context.Context, account, id string, sent bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.acc[account]
	if u == nil {
		return nil
	}
	delete(u.slots, id)
	if !sent {
		delete(u.sent, id)
	}
	if len(u.slots) == 0 && len(u.sent) == 0 {
		delete(m.acc, account)
	}
	return nil
}

func (m *memory) renew(_ context.Context, account, id string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.acc[account]; u != nil {
		if until, ok := u.slots[id]; ok && until.After(now) {
			u.slots[id] = now.Add(m.cfg.Lease)
		}
	}
	return nil
}

// prune drops expired leases and stamps older than the window.
func (u *usage) prune(now time.Time) {
	for id, until := range u.slots {
		if !until.After(now) {
			delete(u.slots, id)
		}
	}
	for id, at := range u.sent {
		if !at.Add(Window).After(now) {
			delete(u.sent, id)
		}
	}
}
