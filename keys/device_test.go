package keys

import (
	"bytes"
	"testing"
)

// TestDeviceCookieKey (issue 12.3): the device-cookie key is derived from
// the master key (stable across loads, another master gives another key)
// and is none of the other subkeys.
func TestDeviceCookieKey(t *testing.T) {
	cfg := devConfig(t.TempDir())
	r, err := Load(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	k := r.DeviceCookieKey()
	if len(k) != 32 {
		t.Fatalf("key of %d bytes", len(k))
	}
	again, err := Load(cfg, quiet)
	if err != nil || !bytes.Equal(again.DeviceCookieKey(), k) {
		t.Fatalf("reloaded ring: another device-cookie key (%v)", err)
	}
	for name, other := range map[string][]byte{"session": r.SessionMACKey(), "pseudonym": r.PseudonymKey(),
		"index": r.cur.hash.Index, "field": r.cur.fieldKey, "wrap": r.cur.wrapKey} {
		if bytes.Equal(other, k) {
			t.Errorf("device-cookie key equals the %s key", name)
		}
	}
	other, err := NewRing(bytes.Repeat([]byte{7}, 32), r.Gateway, r.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.DeviceCookieKey(), k) {
		t.Error("another master key gave the same device-cookie key")
	}
}
