package store

import (
	"strings"
	"testing"
	"time"
)

// Ids sort by creation time (the B-tree inserts append) and keep 128
// random bits.
func TestNewIDOrderedAndRandom(t *testing.T) {
	before := time.Now().UnixMilli()
	a := NewID()
	time.Sleep(2 * time.Millisecond)
	b := NewID()
	after := time.Now().UnixMilli()
	for _, id := range []string{a, b} {
		if len(id) != IDLen || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q: want %d lowercase hex digits", id, IDLen)
		}
	}
	if !(a < b) {
		t.Errorf("ids made 2 ms apart do not sort by time: %s >= %s", a, b)
	}
	var ms int64
	for _, c := range a[:12] {
		ms = ms*16 + int64(strings.IndexRune("0123456789abcdef", c))
	}
	if ms < before || ms > after {
		t.Errorf("time prefix %d outside [%d, %d]", ms, before, after)
	}
	// Same millisecond: the random parts differ.
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if seen[id[12:]] {
			t.Fatalf("random part repeated: %s", id)
		}
		seen[id[12:]] = true
	}
}
