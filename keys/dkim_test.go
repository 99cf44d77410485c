package keys

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"testing"
)

// The DKIM keys are created once, kept wrapped under the master key (the
// file never holds a private key in the clear), and come back the same.
func TestDKIMCreatedOnceAndWrapped(t *testing.T) {
	dir := t.TempDir()
	cfg := devConfig(dir)
	r, err := Load(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := LoadDKIM(cfg.Keys.DKIMKeyFile, r, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if k1.RSA.N.BitLen() != 2048 || len(k1.Ed25519) == 0 {
		t.Fatalf("rsa %d bits, ed25519 %d bytes", k1.RSA.N.BitLen(), len(k1.Ed25519))
	}
	st, err := os.Stat(cfg.Keys.DKIMKeyFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("dkim key file: %v, mode %v", err, st)
	}
	file, _ := os.ReadFile(cfg.Keys.DKIMKeyFile)
	pk8, _ := x509.MarshalPKCS8PrivateKey(k1.RSA)
	if bytes.Contains(file, k1.Ed25519.Seed()) || bytes.Contains(file, pk8[len(pk8)-64:]) {
		t.Fatal("the key file holds a private key in the clear")
	}
	k2, err := LoadDKIM(cfg.Keys.DKIMKeyFile, r, quiet)
	if err != nil || !k2.RSA.Equal(k1.RSA) || !k2.Ed25519.Equal(k1.Ed25519) {
		t.Fatalf("reload gave other keys: %v", err)
	}
	// Two nodes starting at once on a shared folder: the one that loses the
	// race to create the file is told so (and LoadDKIM then reads the
	// winner's keys) instead of replacing them.
	if _, err := createDKIM(cfg.Keys.DKIMKeyFile, r, quiet); !errors.Is(err, os.ErrExist) {
		t.Fatalf("creating over an existing key file: %v, want ErrExist", err)
	}
	if k3, err := LoadDKIM(cfg.Keys.DKIMKeyFile, r, quiet); err != nil || !k3.RSA.Equal(k1.RSA) {
		t.Fatalf("the keys changed: %v", err)
	}
	other, err := NewRing(bytes.Repeat([]byte{7}, 32), r.Gateway, r.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDKIM(cfg.Keys.DKIMKeyFile, other, quiet); err == nil {
		t.Fatal("a wrong master key unwrapped the DKIM keys")
	}
}
