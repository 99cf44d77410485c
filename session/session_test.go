package session

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

// clock is a settable time source for Manager.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newManager() (*Manager, *Memory, *clock) {
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	mem := NewMemory()
	return &Manager{Store: mem, Idle: 10 * time.Minute, Absolute: 12 * time.Hour, Now: clk.Now}, mem, clk
}

var ctx = context.Background()

func TestStartResumeEnd(t *testing.T) {
	m, mem, _ := newManager()
	priv := []byte("-----BEGIN PGP PRIVATE KEY----- pretend key bytes")
	tok, rec, err := m.Start(ctx, "user-1", "patient", priv)
	if err != nil {
		t.Fatal(err)
	}
	if rec.UserID != "user-1" || rec.Role != "patient" || rec.ID == "" || !strings.HasPrefix(tok, rec.ID+".") {
		t.Fatalf("record %+v token %q", rec, tok)
	}
	// The record never holds the key or the secret in the clear.
	stored, err := mem.Get(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	secret := tok[len(rec.ID)+1:]
	if bytes.Contains(stored.WrappedKey, priv) || bytes.Contains(stored.WrappedKey, []byte("pretend")) {
		t.Error("record holds the private key in the clear")
	}
	for _, b := range [][]byte{stored.WrappedKey, stored.SecretHash} {
		if bytes.Contains(b, []byte(secret)) {
			t.Error("record holds the cookie secret")
		}
	}

	r, got, err := m.Resume(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, priv) || r.UserID != "user-1" || r.Role != "patient" {
		t.Errorf("resumed %+v key %q", r, got)
	}

	if err := m.End(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Resume(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Errorf("after End: %v, want ErrNoSession", err)
	}
	// Ending twice, or ending garbage, is harmless.
	if err := m.End(ctx, tok); err != nil {
		t.Error(err)
	}
	if err := m.End(ctx, "garbage"); err != nil {
		t.Error(err)
	}
}

func TestOneSessionPerUser(t *testing.T) {
	m, _, _ := newManager()
	first, _, err := m.Start(ctx, "user-1", "staff", []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := m.Start(ctx, "user-2", "staff", []byte("k2"))
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := m.Start(ctx, "user-1", "staff", []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Resume(ctx, first); !errors.Is(err, ErrNoSession) {
		t.Errorf("first session after second Start: %v, want ErrNoSession", err)
	}
	if _, k, err := m.Resume(ctx, second); err != nil || string(k) != "k1" {
		t.Errorf("second session: %q %v", k, err)
	}
	if _, k, err := m.Resume(ctx, other); err != nil || string(k) != "k2" {
		t.Errorf("another user's session was touched: %q %v", k, err)
	}
}

func TestRecordAloneCannotUnwrap(t *testing.T) {
	m, mem, _ := newManager()
	priv := []byte("secret private key")
	tok, rec, err := m.Start(ctx, "user-1", "patient", priv)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := mem.Get(ctx, rec.ID)
	// Everything an attacker with the session store has: id, hash, wrapped key.
	for _, guess := range [][]byte{
		make([]byte, 32),
		pcrypto.RandomBytes(32),
		stored.SecretHash,
		[]byte(rec.ID + rec.ID + rec.ID)[:32],
	} {
		if _, err := pcrypto.Unwrap(guess, stored.WrappedKey, keyAAD(rec.ID)); err == nil {
			t.Errorf("unwrapped with %x", guess)
		}
	}
	// The right secret works only with the right id (AAD binds the record).
	_, secret, _ := split(tok)
	if k, err := pcrypto.Unwrap(secret, stored.WrappedKey, keyAAD(rec.ID)); err != nil || !bytes.Equal(k, priv) {
		t.Fatalf("right secret: %q %v", k, err)
	}
	if _, err := pcrypto.Unwrap(secret, stored.WrappedKey, keyAAD("other-id")); err == nil {
		t.Error("wrapped key opens under another session id")
	}
}

func TestTamperedTokens(t *testing.T) {
	m, mem, _ := newManager()
	tok, rec, err := m.Start(ctx, "user-1", "patient", []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := m.Start(ctx, "user-2", "patient", []byte("k2"))
	if err != nil {
		t.Fatal(err)
	}
	id, secret, _ := split(tok)
	flipped := append([]byte(nil), secret...)
	flipped[0] ^= 1
	_, otherSecret, _ := split(other)
	bad := map[string]string{
		"empty":             "",
		"no dot":            id,
		"no id":             "." + b64.EncodeToString(secret),
		"no secret":         id + ".",
		"short secret":      id + "." + b64.EncodeToString(secret[:16]),
		"long secret":       id + "." + b64.EncodeToString(append(secret, 0)),
		"not base64":        id + ".!!!!",
		"flipped bit":       id + "." + b64.EncodeToString(flipped),
		"another's secret":  id + "." + b64.EncodeToString(otherSecret),
		"unknown id":        "AAAAAAAAAAAAAAAAAAAAAAAA." + b64.EncodeToString(secret),
		"trailing garbage":  tok + "x",
		"two dots":          tok + ".x",
		"secret hash":       id + "." + b64.EncodeToString(mustGet(t, mem, rec.ID).SecretHash),
		"padded base64":     id + "." + b64.EncodeToString(secret) + "=",
		"std base64 secret": id + "." + strings.NewReplacer("-", "+", "_", "/").Replace(b64.EncodeToString(secret)) + "+",
	}
	for name, tk := range bad {
		if _, _, err := m.Resume(ctx, tk); !errors.Is(err, ErrNoSession) {
			t.Errorf("%s: %v, want ErrNoSession", name, err)
		}
	}
	// The genuine token still works after all that.
	if _, _, err := m.Resume(ctx, tok); err != nil {
		t.Errorf("genuine token: %v", err)
	}
}

func mustGet(t *testing.T, s *Memory, id string) *Record {
	t.Helper()
	r, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestIdleExpiry(t *testing.T) {
	m, mem, clk := newManager()
	tok, rec, err := m.Start(ctx, "user-1", "patient", []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	// Activity slides the window: 9 minutes apart, several times over.
	for i := 0; i < 5; i++ {
		clk.Add(9 * time.Minute)
		if _, _, err := m.Resume(ctx, tok); err != nil {
			t.Fatalf("resume %d: %v", i, err)
		}
	}
	clk.Add(10 * time.Minute)
	if _, _, err := m.Resume(ctx, tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after 10 idle minutes: %v, want ErrExpired", err)
	}
	// The record (and its wrapped key) is gone; the browser keeps hearing
	// that it timed out.
	if r, err := mem.Get(ctx, rec.ID); r != nil || err == nil {
		t.Errorf("record after expiry: %+v %v", r, err)
	}
	mem.mu.Lock()
	_, still := mem.byID[rec.ID]
	mem.mu.Unlock()
	if still {
		t.Error("expired record (with its wrapped key) still held")
	}
	if _, k, err := m.Resume(ctx, tok); !errors.Is(err, ErrExpired) || k != nil {
		t.Errorf("expired session resumed again: %q %v, want ErrExpired", k, err)
	}
}

func TestAbsoluteLifetime(t *testing.T) {
	m, _, clk := newManager()
	m.Absolute = time.Hour
	tok, _, err := m.Start(ctx, "user-1", "patient", []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	for elapsed := time.Duration(0); elapsed+5*time.Minute < time.Hour; elapsed += 5 * time.Minute {
		clk.Add(5 * time.Minute)
		if _, _, err := m.Resume(ctx, tok); err != nil {
			t.Fatalf("at %s: %v", elapsed+5*time.Minute, err)
		}
	}
	clk.Add(5 * time.Minute) // exactly one hour after Start
	if _, _, err := m.Resume(ctx, tok); !errors.Is(err, ErrExpired) {
		t.Errorf("after the absolute lifetime: %v, want ErrExpired", err)
	}
	// Absolute = 0 means no absolute limit.
	m.Absolute = 0
	tok, _, _ = m.Start(ctx, "user-2", "patient", []byte("k"))
	for i := 0; i < 30; i++ {
		clk.Add(9 * time.Minute)
		if _, _, err := m.Resume(ctx, tok); err != nil {
			t.Fatalf("no absolute limit, step %d: %v", i, err)
		}
	}
}

func TestSweepTombstones(t *testing.T) {
	m, mem, clk := newManager()
	idle, _, _ := m.Start(ctx, "user-1", "patient", []byte("k1"))
	clk.Add(6 * time.Minute)
	active, _, _ := m.Start(ctx, "user-2", "patient", []byte("k2"))
	clk.Add(5 * time.Minute)

	if n := mem.Sweep(clk.Now(), m.Idle); n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	if _, _, err := m.Resume(ctx, idle); !errors.Is(err, ErrExpired) {
		t.Errorf("swept session: %v, want ErrExpired", err)
	}
	if _, k, err := m.Resume(ctx, active); err != nil || string(k) != "k2" {
		t.Errorf("active session swept: %q %v", k, err)
	}
	// A tampered token for a swept id still reads as "timed out", never a key.
	id, _, _ := split(idle)
	if _, k, err := m.Resume(ctx, id+"."+b64.EncodeToString(make([]byte, 32))); err == nil || k != nil {
		t.Errorf("tampered swept token: %q %v", k, err)
	}
	// Tombstones are forgotten after an hour: then it is simply "no session".
	clk.Add(2 * time.Hour)
	mem.Sweep(clk.Now(), m.Idle)
	if _, _, err := m.Resume(ctx, idle); !errors.Is(err, ErrNoSession) {
		t.Errorf("after the tombstone TTL: %v, want ErrNoSession", err)
	}
	// The other session went idle meanwhile and was swept in that pass.
	if _, _, err := m.Resume(ctx, active); !errors.Is(err, ErrExpired) {
		t.Errorf("second session after sweep: %v, want ErrExpired", err)
	}
	clk.Add(time.Hour)
	mem.Sweep(clk.Now(), m.Idle)
	mem.mu.Lock()
	n := len(mem.ended) + len(mem.byID)
	mem.mu.Unlock()
	if n != 0 {
		t.Errorf("%d entries left after everything expired", n)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	m, mem, clk := newManager()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			user := []string{"a", "b", "c"}[i%3]
			tok, _, err := m.Start(ctx, user, "patient", []byte(user))
			if err != nil {
				t.Error(err)
				return
			}
			if _, k, err := m.Resume(ctx, tok); err == nil && string(k) != user {
				t.Errorf("user %s got key %q", user, k)
			}
			mem.Sweep(clk.Now(), time.Hour)
		}(i)
	}
	wg.Wait()
	mem.mu.Lock()
	defer mem.mu.Unlock()
	per := map[string]int{}
	for _, r := range mem.byID {
		per[r.UserID]++
	}
	for u, n := range per {
		if n > 1 {
			t.Errorf("user %s has %d sessions", u, n)
		}
	}
}
