package crypto

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestDerivePassword(t *testing.T) {
	ctx := context.Background()
	p := TestPasswordParams
	salt := NewSalt()
	if len(salt) != PasswordSaltSize {
		t.Fatalf("salt %d bytes", len(salt))
	}
	a, err := DerivePassword(ctx, []byte("hunter2 hunter2"), salt, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Verifier) != 32 || len(a.KEK) != 32 || bytes.Equal(a.Verifier, a.KEK) {
		t.Fatalf("verifier %x kek %x", a.Verifier, a.KEK)
	}
	b, _ := DerivePassword(ctx, []byte("hunter2 hunter2"), bytes.Clone(salt), p)
	if !VerifierEqual(a.Verifier, b.Verifier) || !bytes.Equal(a.KEK, b.KEK) {
		t.Fatal("not deterministic")
	}
	c, _ := DerivePassword(ctx, []byte("hunter2 hunter2"), NewSalt(), p)
	d, _ := DerivePassword(ctx, []byte("hunter3 hunter2"), salt, p)
	e, _ := DerivePassword(ctx, []byte("hunter2 hunter2"), salt, PasswordParams{Time: 2, MemoryKiB: 8 * 1024, Threads: 1})
	for name, x := range map[string]Derived{"other salt": c, "other password": d, "other params": e} {
		if VerifierEqual(a.Verifier, x.Verifier) || bytes.Equal(a.KEK, x.KEK) {
			t.Errorf("%s: same output", name)
		}
	}
	// The KEK wraps and unwraps, and the verifier is not the KEK in disguise.
	w, err := Wrap(a.KEK, []byte("user private key"), []byte("uk:1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unwrap(a.Verifier, w, []byte("uk:1")); !errors.Is(err, ErrUnwrap) {
		t.Fatal("verifier unwraps the key")
	}
	if _, err := Unwrap(b.KEK, w, []byte("uk:1")); err != nil {
		t.Fatal(err)
	}

	for name, bad := range map[string]PasswordParams{
		"zero time":    {Time: 0, MemoryKiB: 8192, Threads: 1},
		"zero threads": {Time: 1, MemoryKiB: 8192, Threads: 0},
		"tiny memory":  {Time: 1, MemoryKiB: 8, Threads: 2},
		"huge memory":  {Time: 1, MemoryKiB: 1<<20 + 1, Threads: 1},
	} {
		if _, err := DerivePassword(ctx, []byte("pw"), salt, bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := DerivePassword(ctx, []byte("pw"), salt[:7], p); err == nil {
		t.Error("7-byte salt accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := DerivePassword(cctx, []byte("pw"), salt, p); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

func TestVerifierEqual(t *testing.T) {
	if !VerifierEqual([]byte{1, 2, 3}, []byte{1, 2, 3}) || VerifierEqual([]byte{1, 2, 3}, []byte{1, 2, 4}) ||
		VerifierEqual([]byte{1, 2}, []byte{1, 2, 3}) || VerifierEqual(nil, nil) || VerifierEqual([]byte{}, []byte{}) {
		t.Fatal("VerifierEqual wrong")
	}
}

func TestPasswordParamsString(t *testing.T) {
	if s := DefaultPasswordParams.String(); s != "argon2id$t=3$m=65536$p=2" {
		t.Fatalf("String() = %q", s)
	}
	for _, p := range []PasswordParams{DefaultPasswordParams, TestPasswordParams, {Time: 7, MemoryKiB: 1 << 20, Threads: 8}} {
		got, err := ParsePasswordParams(p.String())
		if err != nil || got != p {
			t.Errorf("round trip %v: %v %v", p, got, err)
		}
	}
	for _, s := range []string{
		"", "argon2id", "argon2i$t=3$m=65536$p=2", "argon2id$t=3$m=65536", "argon2id$m=65536$t=3$p=2",
		"argon2id$t=3$m=65536$p=256", "argon2id$t=-1$m=65536$p=2", "argon2id$t=3$m=65536$p=2$x=1",
		"argon2id$t=0$m=65536$p=2", "argon2id$t=3$m=4$p=2", "argon2id$t=3$m=4294967295$p=2", "argon2id$t= 3$m=65536$p=2",
	} {
		if p, err := ParsePasswordParams(s); err == nil {
			t.Errorf("ParsePasswordParams(%q) = %v, want error", s, p)
		}
	}
}

// TestHashConcurrencyBound counts hashes in flight through the test hook:
// with the limit at 3, exactly 3 run while the other 7 queue.
func TestHashConcurrencyBound(t *testing.T) {
	t.Cleanup(func() { testHookHashing = nil; SetMaxConcurrentHashes(4) })
	SetMaxConcurrentHashes(3)
	var inflight, maxSeen atomic.Int32
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	testHookHashing = func() {
		n := inflight.Add(1)
		for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
		}
		entered <- struct{}{}
		<-release
		inflight.Add(-1)
	}
	const n = 10
	salt := NewSalt()
	results := make([]Derived, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = DerivePassword(context.Background(), []byte("pw"), salt, TestPasswordParams)
		})
	}
	for range 3 {
		<-entered
	}
	for waitingHashes() != n-3 {
		runtime.Gosched()
	}
	if got := inflight.Load(); got != 3 {
		t.Fatalf("%d in flight with limit 3", got)
	}
	if len(entered) != 0 {
		t.Fatal("a fourth hash entered")
	}
	close(release)
	wg.Wait()
	if got := maxSeen.Load(); got != 3 {
		t.Fatalf("max in flight %d, want 3", got)
	}
	for i := range n {
		if errs[i] != nil || !bytes.Equal(results[i].Verifier, results[0].Verifier) {
			t.Fatalf("result %d: %v", i, errs[i])
		}
	}
	if inUse, waiting := hashes.counts(); inUse != 0 || waiting != 0 {
		t.Fatalf("leaked slots: in use %d waiting %d", inUse, waiting)
	}
}

// TestHashLimiterResizeAndCancel: raising the limit admits queued callers; a
// caller whose ctx ends while queued leaves without taking a slot.
func TestHashLimiterResizeAndCancel(t *testing.T) {
	t.Cleanup(func() { testHookHashing = nil; SetMaxConcurrentHashes(4) })
	SetMaxConcurrentHashes(1)
	var inflight atomic.Int32
	entered := make(chan struct{}, 8)
	release := make(chan struct{})
	testHookHashing = func() {
		inflight.Add(1)
		entered <- struct{}{}
		<-release
		inflight.Add(-1)
	}
	salt := NewSalt()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := DerivePassword(context.Background(), []byte("pw"), salt, TestPasswordParams); err != nil {
				t.Error(err)
			}
		})
	}
	<-entered
	for waitingHashes() != 2 {
		runtime.Gosched()
	}

	// A fourth caller gives up while queued.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := DerivePassword(ctx, []byte("pw"), salt, TestPasswordParams)
		done <- err
	}()
	for waitingHashes() != 3 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	if waitingHashes() != 2 || inflight.Load() != 1 {
		t.Fatalf("after cancel: waiting %d in flight %d", waitingHashes(), inflight.Load())
	}

	SetMaxConcurrentHashes(3)
	<-entered
	<-entered
	if got := inflight.Load(); got != 3 {
		t.Fatalf("after raising the limit: %d in flight", got)
	}
	close(release)
	wg.Wait()
	if inUse, waiting := hashes.counts(); inUse != 0 || waiting != 0 {
		t.Fatalf("leaked slots: in use %d waiting %d", inUse, waiting)
	}
}

func waitingHashes() int { _, w := hashes.counts(); return w }
