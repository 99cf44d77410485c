package session

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/internal/testclock"
)

// cluster is n Managers (nodes) sharing one session state, with one clock.
type cluster struct {
	clk   *testclock.Clock
	nodes []node
	m     []*Manager
}

func newCluster(t *testing.T, b backend, n int) *cluster {
	c := &cluster{clk: newClock()}
	c.nodes = b.nodes(t, n, c.clk)
	for _, nd := range c.nodes {
		c.m = append(c.m, &Manager{Store: nd.store, Idle: 10 * time.Minute, Absolute: 12 * time.Hour,
			Now: c.clk.Now, Bus: nd.bus})
	}
	return c
}

// TestManager runs every Manager rule against both backends.
func TestManager(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range managerTests {
				t.Run(tc.name, func(t *testing.T) { tc.f(t, b) })
			}
		})
	}
}

// events collects SessionEnded events from a bus.
type collector struct {
	mu  sync.Mutex
	got []events.Event
}

func collect(t *testing.T, bus events.Bus) *collector {
	c := &collector{}
	ch, cancel := bus.Subscribe(ctx)
	t.Cleanup(cancel)
	go func() {
		for e := range ch {
			c.mu.Lock()
			c.got = append(c.got, e)
			c.mu.Unlock()
		}
	}()
	return c
}

// wait returns the events once there are n of them (or after 5s).
func (c *collector) wait(n int) []events.Event {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := append([]events.Event(nil), c.got...)
		c.mu.Unlock()
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var managerTests = []struct {
	name string
	f    func(t *testing.T, b backend)
}{
	{"start resume end", func(t *testing.T, b backend) {
		c := newCluster(t, b, 1)
		m := c.m[0]
		ev := collect(t, c.nodes[0].bus)
		priv := []byte("-----BEGIN PGP PRIVATE KEY----- pretend key bytes")
		tok, rec, err := m.Start(ctx, "user-1", "patient", priv, true)
		if err != nil {
			t.Fatal(err)
		}
		if rec.UserID != "user-1" || rec.Role != "patient" || !rec.MFA || rec.ID == "" || !strings.HasPrefix(tok, rec.ID+".") {
			t.Fatalf("record %+v token %q", rec, tok)
		}
		// The stored record never holds the key or the secret in the clear.
		stored, err := c.nodes[0].store.Get(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, secret, _ := split(tok)
		for _, b := range [][]byte{stored.WrappedKey, stored.SecretHash} {
			if bytes.Contains(b, priv) || bytes.Contains(b, []byte("pretend")) || bytes.Contains(b, secret) ||
				bytes.Contains(b, []byte(tok[len(rec.ID)+1:])) {
				t.Error("record holds the private key or the cookie secret")
			}
		}
		c.clk.Add(time.Minute)
		r, got, err := m.Resume(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, priv) || r.UserID != "user-1" || r.Role != "patient" || !r.MFA || !r.LastSeen.Equal(c.clk.Now()) {
			t.Errorf("resumed %+v key %q", r, got)
		}
		if s, _ := c.nodes[0].store.Get(ctx, rec.ID); !s.LastSeen.Equal(c.clk.Now()) {
			t.Errorf("Resume did not record activity: %v", s.LastSeen)
		}

		if err := m.End(ctx, tok, ReasonUser); err != nil {
			t.Fatal(err)
		}
		_, k, err := m.Resume(ctx, tok)
		wantEnded(t, err, ReasonUser)
		if k != nil {
			t.Error("key returned for an ended session")
		}
		if e := ev.wait(1); len(e) != 1 || e[0] != (events.Event{Kind: events.SessionEnded, UserID: "user-1", SessionID: rec.ID, Reason: ReasonUser}) {
			t.Errorf("events %+v", e)
		}
		// Ending twice, or ending garbage, is harmless and announces nothing.
		for _, tk := range []string{tok, "garbage", "", rec.ID + "." + b64.EncodeToString(make([]byte, 32))} {
			if err := m.End(ctx, tk, ReasonUser); err != nil {
				t.Errorf("End(%q): %v", tk, err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		if e := ev.wait(0); len(e) != 1 {
			t.Errorf("extra events %+v", e)
		}
	}},

	{"peek does not keep the session alive", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		tok, rec, _ := c.m[0].Start(ctx, "user-1", "patient", []byte("k"), true)
		for i := 0; i < 3; i++ {
			c.clk.Add(3 * time.Minute)
			r, err := c.m[i%2].Peek(ctx, tok)
			if err != nil || r.ID != rec.ID || !r.LastSeen.Equal(rec.LastSeen) {
				t.Fatalf("peek %d: %+v %v", i, r, err)
			}
		}
		if _, err := c.m[0].Peek(ctx, rec.ID+"."+b64.EncodeToString(pcrypto.RandomBytes(32))); !errors.Is(err, ErrNoSession) {
			t.Errorf("forged token: %v", err)
		}
		c.clk.Add(time.Minute) // 10 minutes after the last activity
		_, err := c.m[1].Peek(ctx, tok)
		wantEnded(t, err, ReasonIdle)
		_, _, err = c.m[0].Resume(ctx, tok)
		wantEnded(t, err, ReasonIdle)
	}},

	{"end needs the secret", func(t *testing.T, b backend) {
		c := newCluster(t, b, 1)
		m := c.m[0]
		tok, rec, _ := m.Start(ctx, "user-1", "patient", []byte("k"), true)
		// Knowing the id (it travels in events) is not enough to sign
		// someone out.
		if err := m.End(ctx, rec.ID+"."+b64.EncodeToString(pcrypto.RandomBytes(32)), ReasonUser); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Resume(ctx, tok); err != nil {
			t.Errorf("session ended by a forged token: %v", err)
		}
	}},

	{"new sign-in replaces the old one on every node", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		a, bb := c.m[0], c.m[1]
		evA := collect(t, c.nodes[0].bus) // the old browser's websocket is on node A
		first, firstRec, err := a.Start(ctx, "user-1", "staff", []byte("k1"), true)
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := a.Start(ctx, "user-2", "staff", []byte("k2"), true)
		if err != nil {
			t.Fatal(err)
		}
		second, _, err := bb.Start(ctx, "user-1", "staff", []byte("k1"), true)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range c.m {
			_, k, err := m.Resume(ctx, first)
			if Reason(err) != ReasonReplaced || k != nil {
				t.Errorf("node %d: first session: %q %v, want ended (replaced)", i, k, err)
			}
			if _, k, err := m.Resume(ctx, second); err != nil || string(k) != "k1" {
				t.Errorf("node %d: second session: %q %v", i, k, err)
			}
			if _, k, err := m.Resume(ctx, other); err != nil || string(k) != "k2" {
				t.Errorf("node %d: another user's session was touched: %q %v", i, k, err)
			}
		}
		want := events.Event{Kind: events.SessionEnded, UserID: "user-1", SessionID: firstRec.ID, Reason: ReasonReplaced}
		if e := evA.wait(1); len(e) != 1 || e[0] != want {
			t.Errorf("node A heard %+v, want %+v", e, want)
		}
	}},

	{"racing sign-ins across two nodes leave one session", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		evs := []*collector{collect(t, c.nodes[0].bus), collect(t, c.nodes[1].bus)}
		const n = 20
		toks := make([]string, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				tok, _, err := c.m[i%2].Start(ctx, "racer", "patient", []byte("key"), true)
				if err != nil {
					t.Error(err)
				}
				toks[i] = tok
			}(i)
		}
		close(start)
		wg.Wait()
		live := 0
		for _, tok := range toks {
			var errs []error
			for _, m := range c.m {
				_, k, err := m.Resume(ctx, tok)
				errs = append(errs, err)
				if err == nil && string(k) != "key" {
					t.Errorf("wrong key %q", k)
				}
			}
			switch {
			case errs[0] == nil && errs[1] == nil:
				live++
			case Reason(errs[0]) == ReasonReplaced && Reason(errs[1]) == ReasonReplaced:
			default:
				t.Errorf("nodes disagree or wrong reason: %v / %v", errs[0], errs[1])
			}
		}
		if live != 1 {
			t.Errorf("%d live sessions, want exactly 1", live)
		}
		if cnt, _ := c.nodes[0].store.Count(ctx); cnt != 1 {
			t.Errorf("count %d", cnt)
		}
		// Each node heard of every replaced session (n-1 of them).
		for i, ev := range evs {
			got := ev.wait(n - 1)
			seen := map[string]bool{}
			for _, e := range got {
				if e.Kind != events.SessionEnded || e.Reason != ReasonReplaced || e.UserID != "racer" || seen[e.SessionID] {
					t.Errorf("node %d: event %+v", i, e)
				}
				seen[e.SessionID] = true
			}
			if len(seen) != n-1 {
				t.Errorf("node %d heard of %d replaced sessions, want %d", i, len(seen), n-1)
			}
		}
	}},

	{"idle timeout", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		m := c.m[0]
		ev := collect(t, c.nodes[1].bus)
		tok, rec, err := m.Start(ctx, "user-1", "patient", []byte("k"), true)
		if err != nil {
			t.Fatal(err)
		}
		// Activity slides the window: 9 minutes apart, several times over,
		// alternating nodes.
		for i := 0; i < 5; i++ {
			c.clk.Add(9 * time.Minute)
			if _, _, err := c.m[i%2].Resume(ctx, tok); err != nil {
				t.Fatalf("resume %d: %v", i, err)
			}
		}
		c.clk.Add(10 * time.Minute)
		_, k, err := c.m[1].Resume(ctx, tok)
		wantEnded(t, err, ReasonIdle)
		if k != nil {
			t.Error("key returned after idle timeout")
		}
		// The record (and its wrapped key) is gone; every node keeps
		// telling the browser that it timed out.
		for _, nd := range c.nodes {
			_, err := nd.store.Get(ctx, rec.ID)
			wantEnded(t, err, ReasonIdle)
		}
		_, _, err = m.Resume(ctx, tok)
		wantEnded(t, err, ReasonIdle)
		if e := ev.wait(1); len(e) != 1 || e[0].Reason != ReasonIdle || e[0].SessionID != rec.ID {
			t.Errorf("events %+v", e)
		}
	}},

	{"idle timeout default and cap", func(t *testing.T, b backend) {
		c := newCluster(t, b, 1)
		m := c.m[0]
		for idle, want := range map[time.Duration]time.Duration{0: 10 * time.Minute, -1: 10 * time.Minute,
			20 * time.Minute: 20 * time.Minute, 2 * time.Hour: 30 * time.Minute} {
			m.Idle = idle
			if got := m.IdleTimeout(); got != want {
				t.Errorf("Idle %v: timeout %v, want %v", idle, got, want)
			}
		}
		m.Idle = 2 * time.Hour // configured too long: 30 minutes still apply
		tok, _, _ := m.Start(ctx, "user-1", "patient", []byte("k"), true)
		c.clk.Add(29 * time.Minute)
		if _, _, err := m.Resume(ctx, tok); err != nil {
			t.Fatal(err)
		}
		c.clk.Add(30 * time.Minute)
		_, _, err := m.Resume(ctx, tok)
		wantEnded(t, err, ReasonIdle)
	}},

	{"absolute lifetime", func(t *testing.T, b backend) {
		c := newCluster(t, b, 1)
		m := c.m[0]
		m.Absolute = time.Hour
		tok, _, err := m.Start(ctx, "user-1", "patient", []byte("k"), true)
		if err != nil {
			t.Fatal(err)
		}
		for elapsed := time.Duration(0); elapsed+5*time.Minute < time.Hour; elapsed += 5 * time.Minute {
			c.clk.Add(5 * time.Minute)
			if _, _, err := m.Resume(ctx, tok); err != nil {
				t.Fatalf("at %s: %v", elapsed+5*time.Minute, err)
			}
		}
		c.clk.Add(5 * time.Minute) // exactly one hour after Start
		_, _, err = m.Resume(ctx, tok)
		wantEnded(t, err, ReasonAbsolute)
		_, _, err = m.Resume(ctx, tok)
		wantEnded(t, err, ReasonAbsolute)
		// Absolute = 0 means no absolute limit.
		m.Absolute = 0
		tok, _, _ = m.Start(ctx, "user-2", "patient", []byte("k"), true)
		for i := 0; i < 30; i++ {
			c.clk.Add(9 * time.Minute)
			if _, _, err := m.Resume(ctx, tok); err != nil {
				t.Fatalf("no absolute limit, step %d: %v", i, err)
			}
		}
	}},

	{"rotate", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		ev := collect(t, c.nodes[1].bus)
		priv := []byte("the key")
		tok, rec, err := c.m[0].Start(ctx, "user-1", "patient", priv, true)
		if err != nil {
			t.Fatal(err)
		}
		c.clk.Add(time.Minute)
		newTok, nr, err := c.m[1].Rotate(ctx, tok, "staff", true)
		if err != nil {
			t.Fatal(err)
		}
		if nr.ID == rec.ID || newTok == tok || nr.UserID != "user-1" || nr.Role != "staff" || !nr.MFA ||
			!nr.Created.Equal(rec.Created) || !nr.LastSeen.Equal(c.clk.Now()) {
			t.Errorf("rotated record %+v (old %+v)", nr, rec)
		}
		if _, oldSecret, _ := split(tok); strings.Contains(newTok, b64.EncodeToString(oldSecret)) {
			t.Error("rotation kept the old secret")
		}
		for i, m := range c.m {
			_, _, err := m.Resume(ctx, tok)
			if Reason(err) != ReasonPrivilege {
				t.Errorf("node %d: old token: %v, want ended (privilege)", i, err)
			}
			r, k, err := m.Resume(ctx, newTok)
			if err != nil || !bytes.Equal(k, priv) || r.Role != "staff" || !r.MFA {
				t.Errorf("node %d: new token: %+v %q %v", i, r, k, err)
			}
		}
		if e := ev.wait(1); len(e) != 1 || e[0].SessionID != rec.ID || e[0].Reason != ReasonPrivilege {
			t.Errorf("events %+v", e)
		}
		// Rotating an ended or forged token gives nothing.
		if _, _, err := c.m[0].Rotate(ctx, tok, "admin", true); Reason(err) != ReasonPrivilege {
			t.Errorf("rotating the old token: %v", err)
		}
		id, _, _ := split(newTok)
		if _, _, err := c.m[0].Rotate(ctx, id+"."+b64.EncodeToString(pcrypto.RandomBytes(32)), "admin", true); !errors.Is(err, ErrNoSession) {
			t.Errorf("rotating a forged token: %v", err)
		}
		// The absolute lifetime still counts from the first sign-in.
		c.m[0].Absolute = 2 * time.Hour
		for i := 0; i < 12; i++ {
			c.clk.Add(9 * time.Minute)
			if newTok, _, err = c.m[i%2].Rotate(ctx, newTok, "staff", true); err != nil {
				t.Fatalf("rotate %d: %v", i, err)
			}
		}
		c.clk.Add(9 * time.Minute) // 1 + 13*9 = 118 minutes
		if _, _, err := c.m[0].Resume(ctx, newTok); err != nil {
			t.Fatal(err)
		}
		c.clk.Add(2 * time.Minute)
		if _, _, err := c.m[0].Resume(ctx, newTok); Reason(err) != ReasonAbsolute {
			t.Errorf("after 2h from sign-in: %v, want ended (absolute)", err)
		}
	}},

	{"rotate cannot revive a replaced session", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		old, _, _ := c.m[0].Start(ctx, "user-1", "patient", []byte("k"), true)
		newer, _, _ := c.m[1].Start(ctx, "user-1", "patient", []byte("k"), true)
		if _, _, err := c.m[0].Rotate(ctx, old, "patient", true); Reason(err) != ReasonReplaced {
			t.Errorf("rotating a replaced session: %v", err)
		}
		if _, _, err := c.m[0].Resume(ctx, newer); err != nil {
			t.Errorf("newer sign-in was hurt: %v", err)
		}
	}},

	{"end user", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		ev := collect(t, c.nodes[0].bus)
		tok, rec, _ := c.m[0].Start(ctx, "user-1", "patient", []byte("k"), true)
		other, _, _ := c.m[0].Start(ctx, "user-2", "patient", []byte("k"), true)
		if err := c.m[1].EndUser(ctx, "user-1", ReasonDisabled); err != nil {
			t.Fatal(err)
		}
		for i, m := range c.m {
			if _, _, err := m.Resume(ctx, tok); Reason(err) != ReasonDisabled {
				t.Errorf("node %d: %v, want ended (disabled)", i, err)
			}
			if _, _, err := m.Resume(ctx, other); err != nil {
				t.Errorf("node %d: other user: %v", i, err)
			}
		}
		want := events.Event{Kind: events.SessionEnded, UserID: "user-1", SessionID: rec.ID, Reason: ReasonDisabled}
		if e := ev.wait(1); len(e) != 1 || e[0] != want {
			t.Errorf("events %+v", e)
		}
		if err := c.m[1].EndUser(ctx, "nobody", ReasonEverywhere); err != nil {
			t.Error(err)
		}
	}},

	{"record alone cannot unwrap the key", func(t *testing.T, b backend) {
		c := newCluster(t, b, 1)
		priv := []byte("secret private key")
		tok, rec, err := c.m[0].Start(ctx, "user-1", "patient", priv, true)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := c.nodes[0].store.Get(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		// Everything an attacker with the session store has: id, hash,
		// wrapped key.
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
		// The stored hash of the secret is not the secret.
		if bytes.Equal(stored.SecretHash, secret) {
			t.Error("secret stored as is")
		}
	}},

	{"tampered tokens", func(t *testing.T, b backend) {
		c := newCluster(t, b, 1)
		m := c.m[0]
		tok, rec, err := m.Start(ctx, "user-1", "patient", []byte("k"), true)
		if err != nil {
			t.Fatal(err)
		}
		other, _, err := m.Start(ctx, "user-2", "patient", []byte("k2"), true)
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := c.nodes[0].store.Get(ctx, rec.ID)
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
			"secret hash":       id + "." + b64.EncodeToString(stored.SecretHash),
			"padded base64":     id + "." + b64.EncodeToString(secret) + "=",
			"std base64 secret": id + "." + strings.NewReplacer("-", "+", "_", "/").Replace(b64.EncodeToString(secret)) + "+",
			"glob id":           "*." + b64.EncodeToString(secret),
		}
		for name, tk := range bad {
			if _, k, err := m.Resume(ctx, tk); !errors.Is(err, ErrNoSession) || k != nil {
				t.Errorf("%s: %v, want ErrNoSession", name, err)
			}
			if _, _, err := m.Rotate(ctx, tk, "admin", true); !errors.Is(err, ErrNoSession) {
				t.Errorf("rotate %s: %v, want ErrNoSession", name, err)
			}
		}
		// The genuine token still works after all that.
		if _, _, err := m.Resume(ctx, tok); err != nil {
			t.Errorf("genuine token: %v", err)
		}
	}},

	// A sign-in still waiting for its second factor replaces nothing: a
	// password alone must not sign the owner out everywhere. Completing the
	// second factor (Rotate with mfa) replaces the older session.
	{"pending sign-in replaces nothing", func(t *testing.T, b backend) {
		m := newCluster(t, b, 1).m[0]
		full, _, err := m.Start(ctx, "user-1", "staff", []byte("k"), true)
		if err != nil {
			t.Fatal(err)
		}
		pending, _, err := m.Start(ctx, "user-1", "staff", []byte("k"), false)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Resume(ctx, full); err != nil {
			t.Fatalf("a pending sign-in ended the full session: %v", err)
		}
		done, _, err := m.Rotate(ctx, pending, "staff", true)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = m.Resume(ctx, full)
		wantEnded(t, err, ReasonReplaced)
		if _, _, err := m.Resume(ctx, done); err != nil {
			t.Errorf("the completed sign-in: %v", err)
		}
	}},

	{"without a bus", func(t *testing.T, b backend) {
		c := newCluster(t, b, 1)
		m := c.m[0]
		m.Bus = nil
		tok, _, err := m.Start(ctx, "u", "patient", []byte("k"), true)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.Start(ctx, "u", "patient", []byte("k"), true); err != nil {
			t.Fatal(err)
		}
		_, _, err = m.Resume(ctx, tok)
		wantEnded(t, err, ReasonReplaced)
	}},

	{"concurrent use", func(t *testing.T, b backend) {
		c := newCluster(t, b, 2)
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				m := c.m[i%2]
				user := []string{"a", "b", "c"}[i%3]
				tok, _, err := m.Start(ctx, user, "patient", []byte(user), true)
				if err != nil {
					t.Error(err)
					return
				}
				if _, k, err := m.Resume(ctx, tok); err == nil && string(k) != user {
					t.Errorf("user %s got key %q", user, k)
				} else if err != nil && Reason(err) != ReasonReplaced {
					t.Errorf("resume: %v", err)
				}
				if i%4 == 0 {
					if nt, _, err := m.Rotate(ctx, tok, "staff", true); err == nil {
						tok = nt
					}
				}
				if i%5 == 0 {
					_ = m.End(ctx, tok, ReasonUser)
				}
			}(i)
		}
		wg.Wait()
		if n, err := c.nodes[0].store.Count(ctx); err != nil || n > 3 {
			t.Errorf("count %d %v, want at most one per user", n, err)
		}
	}},
}

func TestReason(t *testing.T) {
	err := fmt.Errorf("portal: %w", &EndedError{Reason: ReasonIdle})
	if Reason(err) != ReasonIdle {
		t.Errorf("Reason(wrapped) = %q", Reason(err))
	}
	for _, e := range []error{nil, ErrNoSession, errors.New("x")} {
		if Reason(e) != "" {
			t.Errorf("Reason(%v) = %q", e, Reason(e))
		}
	}
	if (&EndedError{Reason: "replaced"}).Error() != "session: ended (replaced)" {
		t.Error((&EndedError{Reason: "replaced"}).Error())
	}
}

// TestRedisHoldsNoSecrets: after a full life cycle, nothing in Redis holds
// the private key, the cookie secret, or anything but ids, role, times and
// ciphertext; and every key expires.
func TestRedisHoldsNoSecrets(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	clk := newClock()
	m := &Manager{Store: NewRedis(rdb, testPrefix), Idle: 10 * time.Minute, Absolute: 12 * time.Hour,
		Now: clk.Now, Bus: events.NewRedis(rdb, "phigate:events")}
	priv := []byte("PRIVATE-KEY-CANARY-0123456789")
	userID := "9f86d081884c7d659a2feaa0c55ad015"
	tok, _, err := m.Start(ctx, userID, "patient", priv, true)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ = m.Rotate(ctx, tok, "patient", true)
	m.Resume(ctx, tok)
	tok2, _, _ := m.Start(ctx, userID, "patient", priv, true)
	_, secret, _ := split(tok2)
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var all bytes.Buffer
	for _, k := range keys {
		if !strings.HasPrefix(k, testPrefix) {
			t.Errorf("key outside the prefix: %q", k)
		}
		all.WriteString(k)
		switch rdb.Type(ctx, k).Val() {
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				all.WriteString(f + v)
			}
		case "set":
			all.WriteString(strings.Join(rdb.SMembers(ctx, k).Val(), ""))
		case "string":
			all.WriteString(rdb.Get(ctx, k).Val())
		default:
			t.Errorf("unexpected key type of %q", k)
		}
	}
	for _, needle := range [][]byte{priv, []byte("CANARY"), secret, []byte(b64.EncodeToString(secret))} {
		if bytes.Contains(all.Bytes(), needle) {
			t.Errorf("Redis holds %q", needle)
		}
	}
	assertAllKeysExpire(t, rdb)
}
