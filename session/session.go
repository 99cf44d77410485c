// Package session keeps portal sign-ins. The server-side record holds the
// user's private key only wrapped under a random secret that lives in the
// browser's cookie (DESIGN.md "Keys"), so the record alone unlocks nothing,
// and deleting the record makes the key unreachable.
package session

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

var (
	ErrNoSession = errors.New("session: not signed in")
	ErrExpired   = errors.New("session: ended after inactivity")
)

type Record struct {
	ID         string
	UserID     string
	Role       string
	WrappedKey []byte
	SecretHash []byte // lets Resume refuse a forged secret before unwrapping
	Created    time.Time
	LastSeen   time.Time
}

// Store keeps records; in process for now, Redis for scale-out (issue #3).
type Store interface {
	// Put stores r and ends every other session of r.UserID in the same
	// atomic step, so two sign-ins racing each other leave one session.
	Put(ctx context.Context, r Record) error
	Get(ctx context.Context, id string) (*Record, error)
	Touch(ctx context.Context, id string, at time.Time) error
	Delete(ctx context.Context, id string) error
	// Expire deletes a timed-out session but remembers its id for a while,
	// so the browser can be told why it was signed out.
	Expire(ctx context.Context, id string, at time.Time) error
	// DeleteUser ends every session of userID (one session per user).
	DeleteUser(ctx context.Context, userID string) error
}

type Manager struct {
	Store    Store
	Idle     time.Duration
	Absolute time.Duration
	Now      func() time.Time
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

var b64 = base64.RawURLEncoding

func keyAAD(id string) []byte { return []byte("session-key:" + id) }

// Start ends the user's other sessions and opens a new one holding priv.
// The returned token goes into the cookie; it is the only place the secret
// exists.
func (m *Manager) Start(ctx context.Context, userID, role string, priv []byte) (string, *Record, error) {
	if err := m.Store.DeleteUser(ctx, userID); err != nil {
		return "", nil, err
	}
	id := b64.EncodeToString(pcrypto.RandomBytes(18))
	secret := pcrypto.RandomBytes(32)
	wrapped, err := pcrypto.Wrap(secret, priv, keyAAD(id))
	if err != nil {
		return "", nil, err
	}
	now := m.now()
	r := Record{ID: id, UserID: userID, Role: role, WrappedKey: wrapped,
		SecretHash: pcrypto.MAC([]byte("session"), secret), Created: now, LastSeen: now}
	if err := m.Store.Put(ctx, r); err != nil {
		return "", nil, err
	}
	return id + "." + b64.EncodeToString(secret), &r, nil
}

func split(token string) (id string, secret []byte, ok bool) {
	id, s, ok := strings.Cut(token, ".")
	if !ok || id == "" {
		return "", nil, false
	}
	secret, err := b64.DecodeString(s)
	if err != nil || len(secret) != 32 {
		return "", nil, false
	}
	return id, secret, true
}

// Resume checks the token, enforces idle and absolute limits, slides the
// idle window, and returns the record with the unwrapped private key.
func (m *Manager) Resume(ctx context.Context, token string) (*Record, []byte, error) {
	id, secret, ok := split(token)
	if !ok {
		return nil, nil, ErrNoSession
	}
	r, err := m.Store.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare(r.SecretHash, pcrypto.MAC([]byte("session"), secret)) != 1 {
		return nil, nil, ErrNoSession
	}
	now := m.now()
	if now.Sub(r.LastSeen) >= m.Idle || (m.Absolute > 0 && now.Sub(r.Created) >= m.Absolute) {
		_ = m.Store.Expire(ctx, id, now)
		return nil, nil, ErrExpired
	}
	priv, err := pcrypto.Unwrap(secret, r.WrappedKey, keyAAD(id))
	if err != nil {
		return nil, nil, ErrNoSession
	}
	if err := m.Store.Touch(ctx, id, now); err != nil {
		return nil, nil, err
	}
	r.LastSeen = now
	return r, priv, nil
}

// End signs the token's session out.
func (m *Manager) End(ctx context.Context, token string) error {
	id, _, ok := split(token)
	if !ok {
		return nil
	}
	return m.Store.Delete(ctx, id)
}

// Memory is the in-process Store.
type Memory struct {
	mu   sync.Mutex
	byID map[string]*Record
	// ended remembers swept sessions (without any key material) for a
	// while, so a returning browser is told it timed out, not just "signed
	// out".
	ended map[string]time.Time
}

func NewMemory() *Memory { return &Memory{byID: map[string]*Record{}, ended: map[string]time.Time{}} }

// tombstoneTTL is how long a swept session's id is remembered.
const tombstoneTTL = time.Hour

func (s *Memory) Put(_ context.Context, r Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// One session per user, even when two Starts race past DeleteUser.
	for id, o := range s.byID {
		if o.UserID == r.UserID && id != r.ID {
			delete(s.byID, id)
		}
	}
	s.byID[r.ID] = &r
	return nil
}

func (s *Memory) Get(_ context.Context, id string) (*Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byID[id]
	if !ok {
		if _, swept := s.ended[id]; swept {
			return nil, ErrExpired
		}
		return nil, ErrNoSession
	}
	c := *r
	return &c, nil
}

func (s *Memory) Touch(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.byID[id]; ok {
		r.LastSeen = at
		return nil
	}
	return ErrNoSession
}

func (s *Memory) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
	return nil
}

func (s *Memory) Expire(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[id]; ok {
		delete(s.byID, id)
		s.ended[id] = at
	}
	return nil
}

func (s *Memory) DeleteUser(_ context.Context, userID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.byID {
		if r.UserID == userID {
			delete(s.byID, id)
		}
	}
	return nil
}

// Sweep drops sessions idle longer than idle; run it periodically so ended
// sessions' wrapped keys do not linger in memory.
func (s *Memory) Sweep(now time.Time, idle time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, r := range s.byID {
		if now.Sub(r.LastSeen) >= idle {
			delete(s.byID, id)
			s.ended[id] = now
			n++
		}
	}
	for id, at := range s.ended {
		if now.Sub(at) >= tombstoneTTL {
			delete(s.ended, id)
		}
	}
	return n
}
