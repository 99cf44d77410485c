package crypto

import (
	"bytes"
	"testing"
)

func benchKeys(b *testing.B) (gw, rcpt, escrow *Key) {
	return testKey(b, "gateway"), testKey(b, "alice"), testKey(b, "escrow")
}

func benchSeal(b *testing.B, size int) {
	gw, rcpt, escrow := benchKeys(b)
	rp, ep := rcpt.Public(), escrow.Public()
	pt := bytes.Repeat([]byte("x"), size)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		if _, err := Seal(pt, gw, rp, ep); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal20KB(b *testing.B) { benchSeal(b, 20<<10) }
func BenchmarkSeal1MB(b *testing.B)  { benchSeal(b, 1<<20) }

func BenchmarkOpen20KB(b *testing.B) {
	gw, rcpt, escrow := benchKeys(b)
	s := mustSeal(b, bytes.Repeat([]byte("x"), 20<<10), gw, rcpt.Public(), escrow.Public())
	verifier := gw.Public()
	b.ReportAllocs()
	b.SetBytes(20 << 10)
	for b.Loop() {
		if _, st, err := Open(s, rcpt, verifier); err != nil || st != SigVerified {
			b.Fatal(st, err)
		}
	}
}

func BenchmarkRewrap(b *testing.B) {
	gw, rcpt, escrow := benchKeys(b)
	pending := testKey(b, "pending")
	s := mustSeal(b, []byte("small"), gw, pending.Public(), escrow.Public())
	to := rcpt.Public()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrap(s.KeyPackets, pending, to); err != nil {
			b.Fatal(err)
		}
	}
}
