package session

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/redistest"
)

// tamperer changes one field of a stored record behind the Manager's back,
// as someone with write access to the store would: in Redis with HSET on
// the raw key, in process by editing the stored record. Fields are named
// by their Redis hash field (see redis.go); from is another live session
// whose value is copied, for the fields that only make sense swapped.
type tamperer func(t *testing.T, id, field, from string)

func redisTamperer(s *Redis) tamperer {
	return func(t *testing.T, id, field, from string) {
		t.Helper()
		key := s.sKey(id)
		var value string
		switch field {
		case "u":
			value = "admin-1"
		case "r":
			value = "admin"
		case "m":
			value = "1"
		case "c", "l":
			at, err := strconv.ParseInt(s.rdb.HGet(ctx, key, field).Val(), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			value = strconv.FormatInt(at+int64(6*time.Hour), 10)
		default: // k, h, a: another session's value
			value = s.rdb.HGet(ctx, s.sKey(from), field).Val()
		}
		if err := s.rdb.HSet(ctx, key, field, value).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func memoryTamperer(s *Memory) tamperer {
	return func(t *testing.T, id, field, from string) {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		r, other := s.byID[id], s.byID[from]
		switch field {
		case "u":
			r.UserID = "admin-1"
		case "r":
			r.Role = "admin"
		case "m":
			r.MFA = true
		case "c":
			r.Created = r.Created.Add(6 * time.Hour)
		case "l":
			r.LastSeen = r.LastSeen.Add(6 * time.Hour)
		case "k":
			r.WrappedKey = append([]byte(nil), other.WrappedKey...)
		case "h":
			r.SecretHash = append([]byte(nil), other.SecretHash...)
		case "a":
			r.Seal = append([]byte(nil), other.Seal...)
		default:
			t.Fatalf("unknown field %q", field)
		}
	}
}

// TestTamperedRecordRefused: each field of a stored record that authorises
// anything (user, role, second-factor mark, sign-in and last-activity
// times, wrapped key, secret MAC, the seal itself), changed directly in the
// store, makes the session "no session" for Resume, Peek and Rotate, on
// this request and after; it is reported to OnTamper exactly once, with the
// id and the claimed user, and not as an ordinary end. An untouched session
// of the same kind goes on working.
func TestTamperedRecordRefused(t *testing.T) {
	fields := []string{"u", "r", "m", "c", "l", "k", "h", "a"}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			nd := b.nodes(t, 1, clk)[0]
			var tamper tamperer
			switch s := nd.store.(type) {
			case *Redis:
				tamper = redisTamperer(s)
			case *Memory:
				tamper = memoryTamperer(s)
			}
			var mu sync.Mutex
			reports := map[string][]string{}
			var ended []string
			m := &Manager{Store: nd.store, Idle: 10 * time.Minute, Absolute: 12 * time.Hour, Now: clk.Now,
				MACKey: []byte("0123456789abcdef0123456789abcdef"),
				OnTamper: func(_ context.Context, id, user string) {
					mu.Lock()
					defer mu.Unlock()
					reports[id] = append(reports[id], user)
				},
				OnEnd: func(_ context.Context, _, id, reason string) {
					mu.Lock()
					defer mu.Unlock()
					ended = append(ended, id+":"+reason)
				}}
			if _, _, err := m.Start(ctx, "admin-1", "admin", []byte("admin key"), true); err != nil {
				t.Fatal(err)
			}
			donorTok, donor, err := m.Start(ctx, "donor", "patient", []byte("donor key"), true)
			if err != nil {
				t.Fatal(err)
			}
			calls := map[string]func(tok string) error{
				"Resume": func(tok string) error { _, _, err := m.Resume(ctx, tok); return err },
				"Peek":   func(tok string) error { _, err := m.Peek(ctx, tok); return err },
				"Rotate": func(tok string) error { _, _, err := m.Rotate(ctx, tok, "admin", true); return err },
			}
			for _, field := range fields {
				for name, call := range calls {
					t.Run(field+"/"+name, func(t *testing.T) {
						user := "mallory-" + field + "-" + name
						tok, rec, err := m.Start(ctx, user, "patient", []byte("mallory key"), false)
						if err != nil {
							t.Fatal(err)
						}
						tamper(t, rec.ID, field, donor.ID)
						if err := call(tok); !errors.Is(err, ErrNoSession) {
							t.Fatalf("tampered %q: %s = %v, want ErrNoSession", field, name, err)
						}
						// Still no session afterwards (not "ended"), and no second report.
						for name2, call2 := range calls {
							if err := call2(tok); !errors.Is(err, ErrNoSession) || Reason(err) != "" {
								t.Errorf("then %s = %v, want ErrNoSession", name2, err)
							}
						}
						mu.Lock()
						defer mu.Unlock()
						want := user
						if field == "u" {
							want = "admin-1"
						}
						if got := reports[rec.ID]; len(got) != 1 || got[0] != want {
							t.Errorf("OnTamper heard %v, want once with %q", got, want)
						}
					})
				}
			}
			if len(ended) != 0 {
				t.Errorf("tampered sessions reported as ordinary ends: %v", ended)
			}
			// Untouched sessions of the same kind work, after all this.
			if _, priv, err := m.Resume(ctx, donorTok); err != nil || string(priv) != "donor key" {
				t.Errorf("untouched session: %v %q", err, priv)
			}
			clk.Add(5 * time.Minute)
			tok, _, err := m.Start(ctx, "carol", "staff", []byte("carol key"), false)
			if err != nil {
				t.Fatal(err)
			}
			tok, rec, err := m.Rotate(ctx, tok, "staff", true)
			if err != nil {
				t.Fatal(err)
			}
			clk.Add(5 * time.Minute)
			if r, priv, err := m.Resume(ctx, tok); err != nil || r.ID != rec.ID || !r.MFA || string(priv) != "carol key" {
				t.Errorf("untouched rotated session: %+v %v %q", r, err, priv)
			}
			clk.Add(9 * time.Minute) // the Touch above re-sealed the record
			if _, err := m.Peek(ctx, tok); err != nil {
				t.Errorf("after a touch: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(reports) != len(fields)*len(calls) {
				t.Errorf("%d tamper reports, want %d", len(reports), len(fields)*len(calls))
			}
		})
	}
}

// TestRedisOldRecordIsNoSession: a record written by a phigate before
// SealVersion 2 (no v, no seal; the MAC covered the secret alone) is "no
// session", not upgraded and not reported as tampering; so is a version-2
// record whose version field is removed.
func TestRedisOldRecordIsNoSession(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := NewRedis(rdb, testPrefix)
	reported := 0
	m := &Manager{Store: s, Idle: 10 * time.Minute, OnTamper: func(context.Context, string, string) { reported++ }}
	tok, rec, err := m.Start(ctx, "user-1", "patient", []byte("key"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HDel(ctx, s.sKey(rec.ID), "v", "a").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Resume(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("old record: %v, want ErrNoSession", err)
	}
	if reported != 0 {
		t.Errorf("an old record was reported as tampering")
	}
	tok, rec, err = m.Start(ctx, "user-2", "patient", []byte("key"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HDel(ctx, s.sKey(rec.ID), "v").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Peek(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("record without version: %v, want ErrNoSession", err)
	}
}
