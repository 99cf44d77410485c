package keys

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
)

func devConfig(dir string) config.Config {
	c := config.Default()
	c.Server.DataDir = dir
	c.ApplyDev()
	c.Fill()
	return c
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestDevBootstrapAndReload(t *testing.T) {
	dir := t.TempDir()
	cfg := devConfig(dir)
	r1, err := Load(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"master.key", "escrow-public.asc", "escrow-private.asc", "escrow-passphrase.txt", "gateway-key.wrapped"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o, want 0600", f, st.Mode().Perm())
		}
	}
	// The dev escrow key unlocks with the passphrase written beside it.
	priv, _ := os.ReadFile(filepath.Join(dir, "escrow-private.asc"))
	pass, _ := os.ReadFile(filepath.Join(dir, "escrow-passphrase.txt"))
	esc, err := pcrypto.UnlockArmored(priv, []byte(strings.TrimSpace(string(pass))))
	if err != nil || esc.Fingerprint() != r1.Escrow.Fingerprint() {
		t.Fatalf("escrow unlock: %v", err)
	}
	// Reload gives the same keys and derived values.
	r2, err := Load(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Gateway.Fingerprint() != r2.Gateway.Fingerprint() || string(r1.EmailIndex("a@b.c")) != string(r2.EmailIndex("A@B.C ")) {
		t.Error("reload changed keys or the blind index")
	}
	sealed, err := r1.SealField("p", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.OpenField("p", sealed); err != nil {
		t.Errorf("field sealed before reload: %v", err)
	}
	if _, err := r2.OpenField("other purpose", sealed); err == nil {
		t.Error("a sealed field opened under another purpose")
	}
}

func TestProductionRefusesPrivateEscrowAndWrongMaster(t *testing.T) {
	dir := t.TempDir()
	cfg := devConfig(dir)
	if _, err := Load(cfg, quiet); err != nil {
		t.Fatal(err)
	}
	prod := cfg
	prod.Dev = false
	prod.Keys.EscrowPublicKeyFile = filepath.Join(dir, "escrow-private.asc")
	if _, err := Load(prod, quiet); err == nil || !strings.Contains(err.Error(), "escrow_public_key_file") {
		t.Errorf("private escrow key accepted: %v", err)
	}
	// Another master key cannot unwrap the gateway key.
	other := filepath.Join(t.TempDir(), "master.key")
	os.WriteFile(other, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o600)
	prod = cfg
	prod.Keys.MasterKeyFile = other
	if _, err := Load(prod, quiet); err == nil || !strings.Contains(err.Error(), "gateway_key_file") {
		t.Errorf("wrong master key: %v", err)
	}
	// A missing master key is not silently created outside dev mode.
	prod = cfg
	prod.Dev = false
	prod.Keys.MasterKeyFile = filepath.Join(t.TempDir(), "none.key")
	if _, err := Load(prod, quiet); err == nil {
		t.Error("missing master key created in production")
	}
}
