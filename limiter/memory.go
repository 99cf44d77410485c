package limiter

import (
	"context"
	"sync"
	"time"
)

// DefaultMaxEntries bounds each of the in-process tables (accounts,
// addresses). Expired entries are swept regularly; when a flood of random
// accounts or addresses still fills a table, entries are evicted, unlocked
// accounts and the quietest addresses first, so memory stays bounded.
const DefaultMaxEntries = 1 << 18

type account struct {
	failures    int
	pending     int       // reservations not yet settled
	expires     time.Time // the count is forgotten then (Lockout after the last failure)
	lockedUntil time.Time
}

type address struct {
	failures int
	resets   time.Time // end of the fixed window
}

type memory struct {
	cfg        Config
	now        func() time.Time
	maxEntries int

	mu        sync.Mutex
	accounts  map[string]*account
	addrs     map[string]*address
	lastSweep time.Time
}

// NewMemory returns a Limiter that keeps its counters in this process. now
// is the clock (time.Now when nil).
func NewMemory(cfg Config, now func() time.Time) *Limiter {
	cfg = cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	return &Limiter{cfg: cfg, b: newMemory(cfg, now, DefaultMaxEntries)}
}

func newMemory(cfg Config, now func() time.Time, maxEntries int) *memory {
	return &memory{cfg: cfg, now: now, maxEntries: max(maxEntries, 16),
		accounts: map[string]*account{}, addrs: map[string]*address{}}
}

// live returns the account's entry if it still means anything at now.
func (m *memory) liveAccount(id string, now time.Time) *account {
	a := m.accounts[id]
	if a == nil {
		return nil
	}
	if a.lockedUntil.After(now) {
		return a
	}
	if !a.lockedUntil.IsZero() || !a.expires.After(now) {
		// The lock has ended (the account gets fresh tries), or the count
		// was forgotten.
		delete(m.accounts, id)
		return nil
	}
	return a
}

func (m *memory) liveAddr(ip string, now time.Time) *address {
	a := m.addrs[ip]
	if a != nil && !a.resets.After(now) {
		delete(m.addrs, ip)
		return nil
	}
	return a
}

func (m *memory) check(_ context.Context, id, ip string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.maybeSweep(now)
	return m.refusal(id, ip, now)
}

func (m *memory) failure(_ context.Context, id, ip string) (bool, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.maybeSweep(now)
	locked, until := m.count(id, ip, now)
	return locked, until, nil
}

// reserve refuses or admits under one hold of the lock, so that
// concurrent attempts cannot all pass the check before any is counted.
func (m *memory) reserve(_ context.Context, id, ip string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.maybeSweep(now)
	if err := m.refusal(id, ip, now); err != nil {
		return 0, err
	}
	a := m.liveAccount(id, now)
	if a != nil && a.failures+a.pending >= m.cfg.MaxFailures {
		return 0, errFull
	}
	if a == nil {
		m.makeRoom(len(m.accounts), now)
		a = &account{expires: now.Add(m.cfg.Lockout)}
		m.accounts[id] = a
	}
	a.pending++
	if ip == "" {
		return 0, nil
	}
	ad := m.liveAddr(ip, now)
	if ad == nil {
		m.makeRoom(len(m.addrs), now)
		ad = &address{resets: now.Add(m.cfg.IPWindow)}
		m.addrs[ip] = ad
	}
	ad.failures++
	return ad.failures, nil
}

func (m *memory) settle(_ context.Context, id, ip, outcome string) (bool, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	a := m.liveAccount(id, now)
	if a != nil && a.pending > 0 {
		a.pending--
	}
	switch outcome {
	case settleFailed:
		locked, until := m.count(id, "", now) // the address counted it at reserve
		return locked, until, nil
	case settleSucceeded:
		if a != nil {
			a.failures = 0 // a lock in force stays
		}
	}
	if ad := m.liveAddr(ip, now); ip != "" && ad != nil && ad.failures > 0 {
		ad.failures--
	}
	return false, time.Time{}, nil
}

// refusal is the Check rule at now: a locked account, then a throttled
// address. m.mu is held.
func (m *memory) refusal(id, ip string, now time.Time) error {
	if a := m.liveAccount(id, now); a != nil && a.lockedUntil.After(now) {
		return &LockedError{Until: a.lockedUntil}
	}
	if ip != "" {
		if a := m.liveAddr(ip, now); a != nil && a.failures >= m.cfg.IPMaxFailures {
			return &ThrottledError{RetryAfter: a.resets.Sub(now)}
		}
	}
	return nil
}

// count is the Failure rule at now. m.mu is held.
func (m *memory) count(id, ip string, now time.Time) (bool, time.Time) {
	if ip != "" {
		a := m.liveAddr(ip, now)
		if a == nil {
			m.makeRoom(len(m.addrs), now)
			a = &address{resets: now.Add(m.cfg.IPWindow)}
			m.addrs[ip] = a
		}
		a.failures++
	}
	a := m.liveAccount(id, now)
	if a == nil {
		m.makeRoom(len(m.accounts), now)
		a = &account{}
		m.accounts[id] = a
	}
	if a.lockedUntil.After(now) {
		return false, a.lockedUntil // not counted, not extended
	}
	a.failures++
	a.expires = now.Add(m.cfg.Lockout)
	if a.failures >= m.cfg.MaxFailures {
		a.lockedUntil = now.Add(m.cfg.Lockout)
		a.expires = a.lockedUntil
		return true, a.lockedUntil
	}
	return false, time.Time{}
}

func (m *memory) success(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if a := m.liveAccount(id, now); a != nil {
		if a.lockedUntil.After(now) {
			a.failures = 0
		} else {
			delete(m.accounts, id)
		}
	}
	return nil
}

func (m *memory) unlock(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.accounts, id)
	return nil
}

func (m *memory) status(_ context.Context, id string) (int, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.liveAccount(id, m.now())
	if a == nil {
		return 0, time.Time{}, nil
	}
	return a.failures, a.lockedUntil, nil
}

// maybeSweep drops expired entries, at most about once per the shorter
// period, so the cost stays amortised.
func (m *memory) maybeSweep(now time.Time) {
	every := min(m.cfg.Lockout, m.cfg.IPWindow, time.Minute)
	if now.Sub(m.lastSweep) < every && !now.Before(m.lastSweep) {
		return
	}
	m.sweep(now)
}

func (m *memory) sweep(now time.Time) {
	m.lastSweep = now
	for id := range m.accounts {
		m.liveAccount(id, now)
	}
	for ip := range m.addrs {
		m.liveAddr(ip, now)
	}
}

// makeRoom is called before adding an entry to a table of size n. A full
// table is swept; if that frees too little, entries are evicted down to
// 90% so that the next evictions are far apart: unlocked accounts before
// locked ones, addresses with the fewest failures first among a sample.
func (m *memory) makeRoom(n int, now time.Time) {
	if n < m.maxEntries {
		return
	}
	m.sweep(now)
	target := m.maxEntries * 9 / 10
	for pass := 0; pass < 2 && len(m.accounts) > target; pass++ {
		for id, a := range m.accounts {
			if len(m.accounts) <= target {
				break
			}
			if pass == 1 || !a.lockedUntil.After(now) {
				delete(m.accounts, id)
			}
		}
	}
	for limit := 1; len(m.addrs) > target; limit *= 2 {
		for ip, a := range m.addrs {
			if len(m.addrs) <= target {
				break
			}
			if a.failures < limit {
				delete(m.addrs, ip)
			}
		}
	}
}
