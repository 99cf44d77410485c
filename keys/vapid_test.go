package keys

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"os"
	"testing"
)

// The VAPID key is created once, kept wrapped under the master key (the
// file never holds the raw scalar), and the same pair comes back on reload.
func TestVAPIDCreatedOnceAndWrapped(t *testing.T) {
	dir := t.TempDir()
	cfg := devConfig(dir)
	r, err := Load(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := LoadVAPID(cfg.Keys.VAPIDKeyFile, r, quiet)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg.Keys.VAPIDKeyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("vapid key file: %v, mode %v", err, st)
	}
	priv, err := base64.RawURLEncoding.DecodeString(v1.Private)
	if err != nil || len(priv) != 32 {
		t.Fatalf("private key %d bytes, %v", len(priv), err)
	}
	pub, err := base64.RawURLEncoding.DecodeString(v1.Public)
	if err != nil || len(pub) != 65 || pub[0] != 4 {
		t.Fatalf("public key is not an uncompressed P-256 point: %x", pub)
	}
	k, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil || !bytes.Equal(k.PublicKey().Bytes(), pub) {
		t.Fatal("public key does not belong to the private key")
	}
	file, _ := os.ReadFile(cfg.Keys.VAPIDKeyFile)
	if bytes.Contains(file, priv) || bytes.Contains(file, []byte(v1.Private)) {
		t.Fatal("the key file holds the private key in the clear")
	}
	v2, err := LoadVAPID(cfg.Keys.VAPIDKeyFile, r, quiet)
	if err != nil || *v2 != *v1 {
		t.Fatalf("reload gave another key: %v", err)
	}
	// Another master key cannot unwrap it.
	other, err := NewRing(bytes.Repeat([]byte{7}, 32), r.Gateway, r.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadVAPID(cfg.Keys.VAPIDKeyFile, other, quiet); err == nil {
		t.Fatal("a wrong master key unwrapped the VAPID key")
	}
}
