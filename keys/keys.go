// Package keys loads the gateway's key hierarchy (DESIGN.md "Keys"): the
// master key that wraps server-held secrets, the gateway signing key, and the
// escrow public key. In dev mode it creates whatever is missing.
package keys

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
)

// Ring holds the loaded keys and the subkeys derived from the master key.
type Ring struct {
	Gateway *pcrypto.Key // private: signs every stored message
	Escrow  *pcrypto.Key // public only: every message is also encrypted to it

	fieldKey   []byte // seals small fields (addresses, notice payloads)
	indexKey   []byte // blind index of addresses
	appPwKey   []byte // keyed hash of app passwords
	recoveryK  []byte // keyed hash of second-factor recovery codes
	sessionK   []byte // keyed check of session secrets
	auditMAC   []byte // chains audit entries
	auditEnc   []byte // encrypts audit details
	wrapKey    []byte // wraps pending recipients' private keys and the gateway key
	pseudonymK []byte
}

func derive(master []byte, label string) []byte {
	k, err := hkdf.Key(sha256.New, master, nil, "phigate "+label+" v1", 32)
	if err != nil {
		panic(err) // only on impossible lengths
	}
	return k
}

// NewRing builds a ring from raw parts (tests use it directly).
func NewRing(master []byte, gateway, escrow *pcrypto.Key) (*Ring, error) {
	if len(master) != 32 {
		return nil, fmt.Errorf("master key must be 32 bytes, got %d", len(master))
	}
	if gateway == nil || !gateway.IsPrivate() {
		return nil, errors.New("gateway key must include its private part")
	}
	if escrow == nil {
		return nil, errors.New("escrow public key missing")
	}
	return &Ring{
		Gateway:    gateway,
		Escrow:     escrow.Public(),
		fieldKey:   derive(master, "field"),
		indexKey:   derive(master, "blind index"),
		appPwKey:   derive(master, "app password"),
		recoveryK:  derive(master, "recovery code"),
		sessionK:   derive(master, "session mac"),
		auditMAC:   derive(master, "audit chain"),
		auditEnc:   derive(master, "audit details"),
		wrapKey:    derive(master, "key wrap"),
		pseudonymK: derive(master, "log pseudonym"),
	}, nil
}

// PseudonymKey is the key for log pseudonyms (see logx).
func (r *Ring) PseudonymKey() []byte { return r.pseudonymK }

// NormalizeAddr lower-cases and trims an address for indexing. (Local parts
// are case-sensitive in theory, RFC 5321 2.4; in practice no mail system
// hands two people addresses that differ only by case.)
func NormalizeAddr(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

// EmailIndex is the blind index used to find an account by address without
// storing the address in the clear.
func (r *Ring) EmailIndex(addr string) []byte {
	m := hmac.New(sha256.New, r.indexKey)
	m.Write([]byte(NormalizeAddr(addr)))
	return m.Sum(nil)
}

// AppPasswordMAC is the stored form of an app password.
func (r *Ring) AppPasswordMAC(secret string) []byte {
	return pcrypto.MAC(r.appPwKey, []byte(secret))
}

// AuditKeys are the audit trail's chain MAC key and details encryption key.
func (r *Ring) AuditKeys() (mac, enc []byte) { return r.auditMAC, r.auditEnc }

// PasscodeMAC is the stored form of a message's first-access passcode.
func (r *Ring) PasscodeMAC(messageID, code string) []byte {
	return pcrypto.MAC(r.recoveryK, []byte("passcode:"+messageID+":"+code))
}

// SessionMACKey keys session records' secret check values.
func (r *Ring) SessionMACKey() []byte { return r.sessionK }

// RecoveryCodeMAC is the stored form of a second-factor recovery code.
func (r *Ring) RecoveryCodeMAC(msg []byte) []byte { return pcrypto.MAC(r.recoveryK, msg) }

// SealField encrypts a small value; purpose binds it to its column/owner.
func (r *Ring) SealField(purpose string, plaintext []byte) ([]byte, error) {
	return pcrypto.Wrap(r.fieldKey, plaintext, []byte(purpose))
}

func (r *Ring) OpenField(purpose string, sealed []byte) ([]byte, error) {
	return pcrypto.Unwrap(r.fieldKey, sealed, []byte(purpose))
}

// WrapPrivate / UnwrapPrivate protect server-held private keys.
func (r *Ring) WrapPrivate(purpose string, key []byte) ([]byte, error) {
	return pcrypto.Wrap(r.wrapKey, key, []byte(purpose))
}

func (r *Ring) UnwrapPrivate(purpose string, sealed []byte) ([]byte, error) {
	return pcrypto.Unwrap(r.wrapKey, sealed, []byte(purpose))
}

// Load reads (and in dev mode creates) the key files named in cfg.
func Load(cfg config.Config, log *slog.Logger) (*Ring, error) {
	master, err := loadMaster(cfg, log)
	if err != nil {
		return nil, err
	}
	escrow, err := loadEscrow(cfg, log)
	if err != nil {
		return nil, err
	}
	wrap := derive(master, "key wrap")
	gw, err := loadGateway(cfg.Keys.GatewayKeyFile, wrap, cfg.Org, log)
	if err != nil {
		return nil, err
	}
	return NewRing(master, gw, escrow)
}

func loadMaster(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.Keys.MasterKey != "" {
		return decodeMaster(cfg.Keys.MasterKey, "keys.master_key")
	}
	path := cfg.Keys.MasterKeyFile
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && cfg.Dev {
		k := pcrypto.RandomBytes(32)
		if err := writeFile(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n")); err != nil {
			return nil, err
		}
		log.Warn("created a new master key", "file", path)
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys.master_key_file: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys.master_key_file %s: permissions %o are too open, want 0600", path, st.Mode().Perm())
	}
	return decodeMaster(string(b), "keys.master_key_file")
}

func decodeMaster(s, setting string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s: want 32 bytes in base64", setting)
	}
	return k, nil
}

func loadEscrow(cfg config.Config, log *slog.Logger) (*pcrypto.Key, error) {
	path := cfg.Keys.EscrowPublicKeyFile
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && cfg.Dev {
		return createDevEscrow(filepath.Dir(path), path, cfg.Org, log)
	}
	if err != nil {
		return nil, fmt.Errorf("keys.escrow_public_key_file: %w", err)
	}
	if !cfg.Dev && pcrypto.ContainsPrivateKey(b) {
		return nil, fmt.Errorf("keys.escrow_public_key_file %s holds a private key: give the gateway only the public half", path)
	}
	k, err := pcrypto.ReadKey(b)
	if err != nil {
		return nil, fmt.Errorf("keys.escrow_public_key_file %s: %w", path, err)
	}
	return k.Public(), nil
}

// createDevEscrow makes an escrow key for dev mode only. A real deployment's
// security officer generates it offline and gives the gateway the public half.
func createDevEscrow(dir, pubPath string, org config.Org, log *slog.Logger) (*pcrypto.Key, error) {
	k, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: org.Name + " escrow", Email: org.NotifyFrom})
	if err != nil {
		return nil, err
	}
	pass := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(pcrypto.RandomBytes(20)))
	// The compat S2K imports into gpg 2.2; the passphrase is 160 random bits,
	// so the weaker S2K costs nothing in practice.
	locked, err := pcrypto.LockArmoredCompat(k, []byte(pass))
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicArmored()
	if err != nil {
		return nil, err
	}
	privPath := filepath.Join(dir, "escrow-private.asc")
	passPath := filepath.Join(dir, "escrow-passphrase.txt")
	for _, f := range []struct {
		path string
		b    []byte
	}{{privPath, locked}, {passPath, []byte(pass + "\n")}, {pubPath, pub}} {
		if err := writeFile(f.path, f.b); err != nil {
			return nil, err
		}
	}
	log.Warn("DEV MODE: created an escrow key and wrote its PRIVATE half and passphrase into the data folder; never do this in production",
		"private", privPath, "passphrase", passPath)
	return k.Public(), nil
}

func loadGateway(path string, wrap []byte, org config.Org, log *slog.Logger) (*pcrypto.Key, error) {
	const aad = "gateway-key"
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: org.Name + " gateway", Email: org.NotifyFrom})
		if err != nil {
			return nil, err
		}
		priv, err := k.PrivateBytes()
		if err != nil {
			return nil, err
		}
		sealed, err := pcrypto.Wrap(wrap, priv, []byte(aad))
		if err != nil {
			return nil, err
		}
		if err := writeFile(path, sealed); err != nil {
			return nil, err
		}
		log.Info("created the gateway signing key", "file", path, "fingerprint", k.Fingerprint())
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys.gateway_key_file: %w", err)
	}
	priv, err := pcrypto.Unwrap(wrap, b, []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("keys.gateway_key_file %s: cannot unwrap with this master key", path)
	}
	return pcrypto.ReadKey(priv)
}

// writeFile creates path with owner-only permissions; it never overwrites.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
