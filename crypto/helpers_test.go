package crypto

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

var (
	keyCacheMu sync.Mutex
	keyCache   = map[string]*Key{}
)

// testKey returns a per-process key for name, generated once.
func testKey(t testing.TB, name string) *Key {
	t.Helper()
	keyCacheMu.Lock()
	defer keyCacheMu.Unlock()
	if k, ok := keyCache[name]; ok {
		return k
	}
	k, err := GenerateKey(KeyOptions{Name: name, Email: name + "@example.test"})
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", name, err)
	}
	keyCache[name] = k
	return k
}

func freshKey(t testing.TB, name string) *Key {
	t.Helper()
	k, err := GenerateKey(KeyOptions{Name: name, Email: name + "@example.test"})
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", name, err)
	}
	return k
}

// rawPacket is one packet's exact bytes and, for a PKESK, its key ID.
type rawPacket struct {
	raw   []byte
	keyID uint64
	pkesk bool
}

func splitPackets(t testing.TB, b []byte) []rawPacket {
	t.Helper()
	var out []rawPacket
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		start := len(b) - r.Len()
		p, err := packet.Read(r)
		if err != nil {
			t.Fatalf("packet.Read at %d: %v", start, err)
		}
		rp := rawPacket{raw: b[start : len(b)-r.Len()]}
		if ek, ok := p.(*packet.EncryptedKey); ok {
			rp.pkesk, rp.keyID = true, ek.KeyId
		}
		out = append(out, rp)
	}
	return out
}

func encKeyID(t testing.TB, k *Key) uint64 {
	t.Helper()
	ek, ok := k.e.EncryptionKey(time.Now())
	if !ok {
		t.Fatal("key has no encryption key")
	}
	return ek.PublicKey.KeyId
}

func findPKESK(t testing.TB, keyPackets []byte, k *Key) []byte {
	t.Helper()
	id := encKeyID(t, k)
	var found []byte
	for _, p := range splitPackets(t, keyPackets) {
		if p.pkesk && p.keyID == id {
			if found != nil {
				t.Fatal("two PKESKs for one key")
			}
			found = p.raw
		}
	}
	return found
}
