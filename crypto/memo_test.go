package crypto

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// openBoth opens s without a memo and with m, and fails unless both give
// the same plaintext, status and error text.
func openBoth(t *testing.T, what string, s *Sealed, key, verifier *Key, m *VerifiedMemo) ([]byte, SignatureStatus, error) {
	t.Helper()
	p0, st0, err0 := Open(s, key, verifier)
	p1, st1, err1 := Open(s, key, verifier, RememberVerified(m))
	if !bytes.Equal(p0, p1) || st0 != st1 || fmt.Sprint(err0) != fmt.Sprint(err1) {
		t.Fatalf("%s: without memo %q %v %v; with memo %q %v %v", what, p0, st0, err0, p1, st1, err1)
	}
	return p1, st1, err1
}

func TestMemoHitSkipsOnlyTheSignature(t *testing.T) {
	gw, alice := testKey(t, "gateway"), testKey(t, "alice")
	m := NewVerifiedMemo(16)
	pt := []byte(`{"subject":"memo"}`)
	s := mustSeal(t, pt, gw, alice.Public(), testKey(t, "escrow").Public())
	v := gw.Public() // one verifier, as a portal has
	for i := range 3 {
		got, st, err := openBoth(t, "open", s, alice, v, m)
		if err != nil || st != SigVerified || !bytes.Equal(got, pt) {
			t.Fatalf("open %d: %q %v %v", i, got, st, err)
		}
	}
	if m.Len() != 1 || m.hits.Load() != 2 {
		t.Fatalf("memo holds %d, %d hits; want 1 entry, 2 hits", m.Len(), m.hits.Load())
	}
}

// TestMemoTamperedRows: after the untampered bytes were memoised, a flipped
// byte anywhere, swapped key packets, or re-encrypted altered content under
// the same session key fail (or report) exactly as without the memo.
func TestMemoTamperedRows(t *testing.T) {
	gw, alice := testKey(t, "gateway"), testKey(t, "alice")
	v := gw.Public()
	m := NewVerifiedMemo(64)
	a := mustSeal(t, bytes.Repeat([]byte("row A "), 50), gw, alice.Public())
	b := mustSeal(t, bytes.Repeat([]byte("row B "), 50), gw, alice.Public())
	for _, s := range []*Sealed{a, b} {
		if _, st, err := openBoth(t, "untampered", s, alice, v, m); err != nil || st != SigVerified {
			t.Fatalf("untampered: %v %v", st, err)
		}
	}
	hits := m.hits.Load()
	verified := 0 // altered bytes that still open and verify in full
	for pos := range a.Data {
		d := bytes.Clone(a.Data)
		d[pos] ^= 0x01
		got, st, err := openBoth(t, fmt.Sprintf("data flip at %d", pos), &Sealed{KeyPackets: a.KeyPackets, Data: d}, alice, v, m)
		// go-crypto (v1.5.2) reads a final partial-body length octet
		// that claims more than is left as the end of the packet: that
		// one flip leaves the plaintext (MDC-checked) and signature as
		// they were. Any other flip is an error.
		if err == nil && (st != SigVerified || !bytes.Equal(got, bytes.Repeat([]byte("row A "), 50))) {
			t.Fatalf("data flip at %d: no error, status %v, %q", pos, st, got)
		}
		if err == nil && !isFinalLengthOctet(a.Data, pos) {
			t.Fatalf("data flip at %d: no error", pos)
		}
		if err == nil {
			verified++
		}
	}
	for pos := range a.KeyPackets {
		kp := bytes.Clone(a.KeyPackets)
		kp[pos] ^= 0x01
		_, st, err := openBoth(t, fmt.Sprintf("key packet flip at %d", pos), &Sealed{KeyPackets: kp, Data: a.Data}, alice, v, m)
		if err == nil && st != SigVerified {
			t.Fatalf("key packet flip at %d: %v", pos, st)
		}
		if err == nil {
			verified++ // a flip the PKESK tolerates: the same session key
		}
	}
	// Swap key packets between two rows: each session key opens the
	// other's data, which fails its integrity check.
	for _, s := range []*Sealed{{KeyPackets: a.KeyPackets, Data: b.Data}, {KeyPackets: b.KeyPackets, Data: a.Data}} {
		if _, _, err := openBoth(t, "swapped key packets", s, alice, v, m); err == nil {
			t.Fatal("swapped key packets: no error")
		}
	}
	if m.hits.Load() != hits {
		t.Fatalf("a tampered row was a memo hit (%d -> %d)", hits, m.hits.Load())
	}
	// Recorded: the two rows and the altered bytes that verified in full.
	if m.Len() != 2+verified {
		t.Fatalf("memo holds %d entries, want %d", m.Len(), 2+verified)
	}
}

// isFinalLengthOctet: pos is the length octet after the first 2^n
// partial-body chunk of a new-format packet (Seal's data is written so).
func isFinalLengthOctet(data []byte, pos int) bool {
	return len(data) > 2 && data[1] >= 224 && data[1] < 255 && pos == 2+1<<(data[1]&0x1f)
}

// TestMemoAlteredUnderSameSessionKey: someone holding a row's session key
// re-encrypts altered signed content (intact MDC, bad signature): the row
// is SigInvalid after the original was memoised, and is never recorded.
func TestMemoAlteredUnderSameSessionKey(t *testing.T) {
	gw, alice := testKey(t, "gateway"), testKey(t, "alice")
	m := NewVerifiedMemo(16)
	var signed bytes.Buffer
	w, err := openpgp.Sign(&signed, gw.e, &openpgp.FileHints{IsBinary: true}, sealConfig)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("pay 100 dollars to clinic"))
	w.Close()
	sk := RandomBytes(32)
	encKey, _ := alice.e.EncryptionKey(time.Now())
	var kp bytes.Buffer
	if err := packet.SerializeEncryptedKeyAEAD(&kp, encKey.PublicKey, packet.CipherAES256, false, sk, nil); err != nil {
		t.Fatal(err)
	}
	seal := func(plain []byte) *Sealed {
		var data bytes.Buffer
		dw, err := packet.SerializeSymmetricallyEncrypted(&data, packet.CipherAES256, false, packet.CipherSuite{}, sk, nil)
		if err != nil {
			t.Fatal(err)
		}
		dw.Write(plain)
		dw.Close()
		return &Sealed{KeyPackets: kp.Bytes(), Data: data.Bytes()}
	}
	if _, st, err := openBoth(t, "original", seal(signed.Bytes()), alice, gw, m); err != nil || st != SigVerified {
		t.Fatalf("original: %v %v", st, err)
	}
	tampered := bytes.Clone(signed.Bytes())
	tampered[bytes.Index(tampered, []byte("100"))] = '9'
	for range 2 {
		got, st, err := openBoth(t, "altered", seal(tampered), alice, gw, m)
		if err != nil || st != SigInvalid || string(got) != "pay 900 dollars to clinic" {
			t.Fatalf("altered: %q %v %v", got, st, err)
		}
	}
	if m.Len() != 1 {
		t.Fatalf("memo holds %d entries; an invalid signature was recorded", m.Len())
	}
}

// TestMemoUnknownSigner: a summary signed by a key the verifier does not
// hold is refused (SigUnknownSigner) and never recorded, also with a full
// memo; so is an unsigned one.
func TestMemoUnknownSigner(t *testing.T) {
	gw, other, alice := testKey(t, "gateway"), testKey(t, "other"), testKey(t, "alice")
	const n = 8
	m := NewVerifiedMemo(n)
	for i := range n {
		if _, st, err := Open(mustSeal(t, fmt.Appendf(nil, "fill %d", i), gw, alice.Public()), alice, gw, RememberVerified(m)); err != nil || st != SigVerified {
			t.Fatalf("fill %d: %v %v", i, st, err)
		}
	}
	if m.Len() != n {
		t.Fatalf("memo holds %d, want full (%d)", m.Len(), n)
	}
	forged := mustSeal(t, []byte("from someone else"), other, alice.Public())
	unsigned := mustSeal(t, []byte("unsigned"), nil, alice.Public())
	for range 3 {
		if _, st, err := openBoth(t, "unknown signer", forged, alice, gw, m); err != nil || st != SigUnknownSigner {
			t.Fatalf("unknown signer: %v %v", st, err)
		}
		if _, st, err := openBoth(t, "unsigned", unsigned, alice, gw, m); err != nil || st != SigUnsigned {
			t.Fatalf("unsigned: %v %v", st, err)
		}
	}
	for _, s := range []*Sealed{forged, unsigned} {
		if _, ok := m.index[memoKeyFor(s, alice)]; ok {
			t.Fatal("a message that did not verify was recorded")
		}
	}
}

// TestMemoBindsVerifierAndKey: an entry is only for the decrypting key
// and the verifier objects that produced it. A verifier that dropped the
// signing key (a key removed from the history) gets the full check's
// answer; another recipient of the same bytes is a miss.
func TestMemoBindsVerifierAndKey(t *testing.T) {
	old, cur, alice, bob := freshKey(t, "old-gw"), freshKey(t, "cur-gw"), testKey(t, "alice"), testKey(t, "bob")
	m := NewVerifiedMemo(16)
	s := mustSeal(t, []byte("signed by the retired key"), old, alice.Public(), bob.Public())
	withHistory := cur.WithEarlier(old)
	for range 2 {
		if _, st, err := openBoth(t, "with history", s, alice, withHistory, m); err != nil || st != SigVerified {
			t.Fatalf("with history: %v %v", st, err)
		}
	}
	hits := m.hits.Load()
	if _, st, err := openBoth(t, "history dropped", s, alice, cur.Public(), m); err != nil || st != SigUnknownSigner {
		t.Fatalf("history dropped: %v %v", st, err)
	}
	// The same keys in new objects (a reload): checked again, then found.
	reloaded := cur.WithEarlier(old)
	if _, st, err := openBoth(t, "reloaded", s, alice, reloaded, m); err != nil || st != SigVerified {
		t.Fatalf("reloaded: %v %v", st, err)
	}
	if m.hits.Load() != hits {
		t.Fatal("another verifier hit the entry")
	}
	if _, st, err := openBoth(t, "bob", s, bob, withHistory, m); err != nil || st != SigVerified {
		t.Fatalf("bob: %v %v", st, err)
	}
	if m.hits.Load() != hits {
		t.Fatal("another decrypting key hit the entry")
	}
	if memoKeyFor(s, alice) == memoKeyFor(s, bob) {
		t.Fatal("the memo key does not depend on the decrypting key")
	}
}

// TestMemoClockBack: a hit needs the clock at or after the recorded check.
func TestMemoClockBack(t *testing.T) {
	gw, alice := testKey(t, "gateway"), testKey(t, "alice")
	m := NewVerifiedMemo(4)
	s := mustSeal(t, []byte("clock"), gw, alice.Public())
	openBoth(t, "first", s, alice, gw, m)
	defer func() { memoNow = time.Now }()
	memoNow = func() time.Time { return time.Now().Add(-time.Hour) }
	if _, st, err := Open(s, alice, gw, RememberVerified(m)); err != nil || st != SigVerified || m.hits.Load() != 0 {
		t.Fatalf("clock back: %v %v, %d hits", st, err, m.hits.Load())
	}
}

// TestMemoSkipsExpiringSigners: a signer whose key has a lifetime can
// stop verifying with time, so its messages are never recorded.
func TestMemoSkipsExpiringSigners(t *testing.T) {
	cfg := keyGenConfig()
	cfg.KeyLifetimeSecs = 86400
	e, err := openpgp.NewEntity("expiring", "", "expiring@example.test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	signer, alice := &Key{e: e}, testKey(t, "alice")
	m := NewVerifiedMemo(4)
	s := mustSeal(t, []byte("expiring"), signer, alice.Public())
	for range 2 {
		if _, st, err := openBoth(t, "expiring", s, alice, signer.Public(), m); err != nil || st != SigVerified {
			t.Fatalf("expiring: %v %v", st, err)
		}
	}
	if m.Len() != 0 {
		t.Fatal("a message from a key with a lifetime was recorded")
	}
}

// TestMemoBound: however many distinct messages are opened, from many
// goroutines at once, the memo never holds more than its bound (run with
// -race), and every open still answers right.
func TestMemoBound(t *testing.T) {
	gw, alice := testKey(t, "gateway"), testKey(t, "alice")
	const bound = 16
	m := NewVerifiedMemo(bound)
	msgs := make([]*Sealed, 80)
	for i := range msgs {
		msgs[i] = mustSeal(t, fmt.Appendf(nil, "message %d", i), gw, alice.Public())
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for r := range 3 {
				for i := range msgs {
					j := (i*7 + g*13 + r) % len(msgs)
					got, st, err := Open(msgs[j], alice, gw, RememberVerified(m))
					if err != nil || st != SigVerified || string(got) != fmt.Sprintf("message %d", j) {
						errs <- fmt.Errorf("message %d: %q %v %v", j, got, st, err)
						return
					}
					if n := m.Len(); n > bound {
						errs <- fmt.Errorf("memo holds %d > %d", n, bound)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m.Len() != bound || len(m.index) != bound || m.Cap() != bound || cap(m.slots) != bound {
		t.Fatalf("memo holds %d (index %d), want %d", m.Len(), len(m.index), bound)
	}
	m.Reset()
	if m.Len() != 0 {
		t.Fatal("Reset left entries")
	}
}

// TestMemoEvictionKeepsIndexExact drives add and forget directly: the
// index always points at slots holding its key, and stays within bound.
func TestMemoEvictionKeepsIndexExact(t *testing.T) {
	m := NewVerifiedMemo(5)
	key := func(i int) memoKey { var k memoKey; k[0], k[1] = byte(i), byte(i>>8); return k }
	for i := range 200 {
		m.add(memoSlot{key: key(i), at: int64(i)})
		if i%3 == 0 {
			m.lookup(key(i - 1))
		}
		if i%7 == 0 {
			m.forget(key(i - 2))
		}
		if len(m.slots) > 5 || len(m.index) > 5 {
			t.Fatalf("step %d: %d slots, %d indexed", i, len(m.slots), len(m.index))
		}
		for k, j := range m.index {
			if m.slots[j].key != k {
				t.Fatalf("step %d: index points at a slot of another key", i)
			}
		}
	}
	if _, ok := m.lookup(key(199)); !ok {
		t.Fatal("the newest entry was evicted")
	}
}
