package crypto

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// VerifiedMemo remembers, for a bounded number of sealed messages, that
// this process has already checked their signature (issue 12: re-listing
// an inbox verified every row's gateway signature again, a third of its
// CPU). Open with RememberVerified consults it; see there for what a hit
// skips and what it still does.
//
// An entry is 32 bytes of SHA-256 over the decrypting key's public
// fingerprints, the key packets and the encrypted data (exact bytes:
// any change is a miss), plus the signing key that verified it and the
// time it did. It holds no plaintext and nothing derived from it. Only a
// successful verification is recorded. The memo never holds more than
// its capacity: a new entry past it evicts one (CLOCK, an approximation
// of least recently used). Safe for concurrent use.
type VerifiedMemo struct {
	mu    sync.Mutex
	max   int
	index map[memoKey]int32
	slots []memoSlot
	hand  int

	hits atomic.Int64 // hits whose checks held (tests)
}

// DefaultVerifiedMemoEntries bounds the memo a portal keeps: about 120
// bytes an entry with its index (116 measured), about 12 MB when full.
const DefaultVerifiedMemoEntries = 100_000

type memoKey [sha256.Size]byte

type memoSlot struct {
	key memoKey
	// signer and signKey are the verifier's entity and (sub)key that
	// checked the signature. A hit needs the verifier given to Open to
	// resolve the signature's issuer to these very objects, so another
	// verifier (a rotation reloaded, a key dropped from the history) is
	// a miss, never a borrowed result.
	signer  *openpgp.Entity
	signKey *packet.PublicKey
	at      int64 // Unix seconds, taken after the check succeeded
	ref     bool  // CLOCK: looked up since the hand last passed
}

// NewVerifiedMemo returns a memo of at most n entries (at least 1).
func NewVerifiedMemo(n int) *VerifiedMemo {
	n = min(max(n, 1), 1<<30)
	return &VerifiedMemo{max: n, index: make(map[memoKey]int32)}
}

// Len returns the number of entries.
func (m *VerifiedMemo) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.index)
}

// Cap returns the most entries the memo ever holds.
func (m *VerifiedMemo) Cap() int { return m.max }

// Reset forgets every entry (a benchmark's cold start; tests).
func (m *VerifiedMemo) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.index)
	m.slots, m.hand = nil, 0
}

func (m *VerifiedMemo) lookup(k memoKey) (memoSlot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.index[k]
	if !ok {
		return memoSlot{}, false
	}
	m.slots[i].ref = true
	return m.slots[i], true
}

func (m *VerifiedMemo) forget(k memoKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.index[k]; ok {
		// Leave the slot in place; the index no longer points at it and
		// the next eviction pass reuses it.
		delete(m.index, k)
	}
}

func (m *VerifiedMemo) add(s memoSlot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i, ok := m.index[s.key]; ok {
		m.slots[i] = s
		return
	}
	if len(m.slots) < m.max {
		if len(m.slots) == cap(m.slots) {
			// Grow by doubling, never past the bound.
			grown := make([]memoSlot, len(m.slots), min(max(2*cap(m.slots), 64), m.max))
			copy(grown, m.slots)
			m.slots = grown
		}
		m.index[s.key] = int32(len(m.slots))
		m.slots = append(m.slots, s)
		return
	}
	// CLOCK: pass over slots looked up since the last pass (clearing
	// their mark); take the first one that was not, or a forgotten one.
	for {
		v := &m.slots[m.hand]
		i := m.hand
		m.hand = (m.hand + 1) % len(m.slots)
		if j, live := m.index[v.key]; live && int(j) == i {
			if v.ref {
				v.ref = false
				continue
			}
			delete(m.index, v.key)
		}
		*v = s
		m.index[s.key] = int32(i)
		return
	}
}

// memoKeyFor hashes what makes an Open's outcome: the decrypting key (its
// public fingerprints: a hit is only ever for the key that produced the
// entry, so the same bytes cannot decrypt to other plaintext under a
// session key from another recipient's key packet) and the exact stored
// bytes, each length-prefixed.
func memoKeyFor(s *Sealed, key *Key) memoKey {
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	h.Write([]byte("phigate verified-memo v1\x00"))
	put(key.e.PrimaryKey.Fingerprint)
	binary.BigEndian.PutUint64(n[:], uint64(len(key.e.Subkeys)))
	h.Write(n[:])
	for _, sk := range key.e.Subkeys {
		put(sk.PublicKey.Fingerprint)
	}
	put(s.KeyPackets)
	put(s.Data)
	var k memoKey
	h.Sum(k[:0])
	return k
}

// timeInvariant reports whether a verification that succeeded now would
// succeed at every later time: go-crypto's checks after the signature
// itself (checkMessageSignatureDetails) look at revocations and at key
// and signature lifetimes against the clock, so a message is memoised
// only when the signature and the signer's whole certificate carry no
// lifetime and no revocation. (The gateway's keys and signatures carry
// none.) The remaining clock checks, "created in the future", cannot turn
// false to true while the clock does not go back: a hit also needs the
// clock at or after the recorded time.
func timeInvariant(md *openpgp.MessageDetails) bool {
	if md.Signature == nil || md.SignedBy == nil || md.SignedBy.Entity == nil {
		return false
	}
	if hasLifetime(md.Signature) {
		return false
	}
	e := md.SignedBy.Entity
	if len(e.Revocations) > 0 || len(md.SignedBy.Revocations) > 0 {
		return false
	}
	if e.SelfSignature != nil && hasLifetime(e.SelfSignature) {
		return false
	}
	for _, s := range e.Signatures {
		if hasLifetime(s) {
			return false
		}
	}
	if s, _ := e.PrimarySelfSignature(); s == nil || hasLifetime(s) {
		return false
	}
	for _, id := range e.Identities {
		if len(id.Revocations) > 0 || (id.SelfSignature != nil && hasLifetime(id.SelfSignature)) {
			return false
		}
		for _, s := range id.Signatures {
			if hasLifetime(s) {
				return false
			}
		}
	}
	for _, sk := range e.Subkeys {
		if len(sk.Revocations) > 0 {
			return false
		}
		if sk.Sig != nil && (hasLifetime(sk.Sig) || (sk.Sig.EmbeddedSignature != nil && hasLifetime(sk.Sig.EmbeddedSignature))) {
			return false
		}
	}
	return true
}

func hasLifetime(s *packet.Signature) bool {
	return (s.SigLifetimeSecs != nil && *s.SigLifetimeSecs != 0) ||
		(s.KeyLifetimeSecs != nil && *s.KeyLifetimeSecs != 0)
}

// memoNow is the clock a hit compares with the recorded time (tests move it).
var memoNow = time.Now
