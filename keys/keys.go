// Package keys loads the gateway's key hierarchy (DESIGN.md "Keys"): the
// master key that wraps server-held secrets, the gateway signing key, and the
// escrow public key. In dev mode it creates whatever is missing.
package keys

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
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
//
// After a master-key rotation (issue 14.3, epoch.go, rotate.go) a ring may
// know several master keys: cur seals and wraps, every loaded one opens
// (so a rotation interrupted half-way leaves every value readable), and
// the keyed hashes chain through every epoch's hash keys, because a
// rotation re-keys a stored hash by hashing it again under the new key.
type Ring struct {
	Gateway *pcrypto.Key // private: signs every stored message
	Escrow  *pcrypto.Key // public only: every message is also encrypted to it

	cur     *subkeys   // the active epoch's master key: seals, wraps, sessions, logs
	masters []*subkeys // every loaded master key, cur first: open and unwrap try each
	chain   []hashKeys // keyed-hash keys of epochs 1..active (len 1 without rotations)
	audit   []AuditEpoch
	// history: earlier gateway signing keys (public), which still verify
	// the messages they signed.
	history []*pcrypto.Key
}

// subkeys are the keys derived from one master key.
type subkeys struct {
	id         string // KeyID of the master key
	fieldKey   []byte // seals small fields (addresses, notice payloads)
	wrapKey    []byte // wraps pending recipients' private keys and the gateway key
	sessionK   []byte // keyed check of session secrets
	pseudonymK []byte
	hash       hashKeys
	auditMAC   []byte // chains audit entries
	auditEnc   []byte // encrypts audit details
	deviceK    []byte // authenticates device cookies (portal/device.go)
}

// hashKeys key the stored keyed hashes (blind index, app passwords,
// recovery codes and passcodes).
type hashKeys struct {
	Index    []byte `json:"index"`
	AppPw    []byte `json:"app_password"`
	Recovery []byte `json:"recovery"`
}

func derive(master []byte, label string) []byte {
	k, err := hkdf.Key(sha256.New, master, nil, "phigate "+label+" v1", 32)
	if err != nil {
		panic(err) // only on impossible lengths
	}
	return k
}

// KeyID names a master key without revealing it (a derived value, so
// it says nothing about the subkeys): the key_epochs table and the
// operator's output refer to keys by it.
func KeyID(master []byte) string { return hex.EncodeToString(derive(master, "key id")[:8]) }

func deriveAll(master []byte) *subkeys {
	return &subkeys{
		id:         KeyID(master),
		fieldKey:   derive(master, "field"),
		wrapKey:    derive(master, "key wrap"),
		sessionK:   derive(master, "session mac"),
		pseudonymK: derive(master, "log pseudonym"),
		hash: hashKeys{
			Index:    derive(master, "blind index"),
			AppPw:    derive(master, "app password"),
			Recovery: derive(master, "recovery code"),
		},
		auditMAC: derive(master, "audit chain"),
		auditEnc: derive(master, "audit details"),
		deviceK:  derive(master, "device cookie"),
	}
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
	sk := deriveAll(master)
	return &Ring{
		Gateway: gateway,
		Escrow:  escrow.Public(),
		cur:     sk,
		masters: []*subkeys{sk},
		chain:   []hashKeys{sk.hash},
		audit:   []AuditEpoch{{Epoch: 1, FromSeq: 1, MAC: sk.auditMAC, Enc: sk.auditEnc}},
	}, nil
}

// KeyID is the active master key's id.
func (r *Ring) KeyID() string { return r.cur.id }

// PseudonymKey is the key for log pseudonyms (see logx).
func (r *Ring) PseudonymKey() []byte { return r.cur.pseudonymK }

// NormalizeAddr lower-cases and trims an address for indexing. (Local parts
// are case-sensitive in theory, RFC 5321 2.4; in practice no mail system
// hands two people addresses that differ only by case.)
func NormalizeAddr(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

// chained is the keyed hash of msg under epoch 1's key, hashed again under
// each later epoch's (what a rotation leaves in the database).
func (r *Ring) chained(key func(hashKeys) []byte, msg []byte) []byte {
	v := pcrypto.MAC(key(r.chain[0]), msg)
	for _, h := range r.chain[1:] {
		v = pcrypto.MAC(key(h), v)
	}
	return v
}

// EmailIndex is the blind index used to find an account by address without
// storing the address in the clear.
func (r *Ring) EmailIndex(addr string) []byte {
	return r.chained(func(h hashKeys) []byte { return h.Index }, []byte(NormalizeAddr(addr)))
}

// AppPasswordMAC is the stored form of an app password.
func (r *Ring) AppPasswordMAC(secret string) []byte {
	return r.chained(func(h hashKeys) []byte { return h.AppPw }, []byte(secret))
}

// AuditKeys are the audit trail's chain MAC key and details encryption key
// of the active epoch (AuditEpochs has every epoch's).
func (r *Ring) AuditKeys() (mac, enc []byte) { return r.cur.auditMAC, r.cur.auditEnc }

// AuditEpochs are the audit keys of every epoch, the first entry each
// one covers ascending: the trail is append-only, so entries keep the key
// they were written under.
func (r *Ring) AuditEpochs() []AuditEpoch { return r.audit }

// AuditEpoch is one epoch's audit keys; FromSeq is its first entry.
type AuditEpoch struct {
	Epoch    int64
	FromSeq  int64
	MAC, Enc []byte
}

// PasscodeMAC is the stored form of a message's first-access passcode.
func (r *Ring) PasscodeMAC(messageID, code string) []byte {
	return r.chained(func(h hashKeys) []byte { return h.Recovery }, []byte("passcode:"+messageID+":"+code))
}

// DeviceCookieKey authenticates the portal's device cookies (issue 12.3),
// under the active master key only: after a master-key rotation, cookies
// issued before it no longer verify and their sign-ins simply wait in the
// ordinary queue until the next successful sign-in issues a new one.
func (r *Ring) DeviceCookieKey() []byte { return r.cur.deviceK }

// SessionMACKey keys session records' secret check values.
func (r *Ring) SessionMACKey() []byte { return r.cur.sessionK }

// RecoveryCodeMAC is the stored form of a second-factor recovery code.
func (r *Ring) RecoveryCodeMAC(msg []byte) []byte {
	return r.chained(func(h hashKeys) []byte { return h.Recovery }, msg)
}

// SealField encrypts a small value; purpose binds it to its column/owner.
func (r *Ring) SealField(purpose string, plaintext []byte) ([]byte, error) {
	return pcrypto.Wrap(r.cur.fieldKey, plaintext, []byte(purpose))
}

// OpenField opens a value sealed under any loaded master key (the active
// one first).
func (r *Ring) OpenField(purpose string, sealed []byte) ([]byte, error) {
	return r.open(func(k *subkeys) []byte { return k.fieldKey }, purpose, sealed)
}

func (r *Ring) open(key func(*subkeys) []byte, purpose string, sealed []byte) ([]byte, error) {
	var err error
	for _, k := range r.masters {
		var pt []byte
		if pt, err = pcrypto.Unwrap(key(k), sealed, []byte(purpose)); err == nil {
			return pt, nil
		}
	}
	return nil, err
}

// WrapPrivate / UnwrapPrivate protect server-held private keys.
func (r *Ring) WrapPrivate(purpose string, key []byte) ([]byte, error) {
	return pcrypto.Wrap(r.cur.wrapKey, key, []byte(purpose))
}

func (r *Ring) UnwrapPrivate(purpose string, sealed []byte) ([]byte, error) {
	return r.open(func(k *subkeys) []byte { return k.wrapKey }, purpose, sealed)
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
	// A master-key rotation under way (rotate.go) left the new key beside
	// the current one: both open what is stored until it finishes.
	next, err := loadNextMaster(cfg)
	if err != nil {
		return nil, err
	}
	wraps := [][]byte{derive(master, "key wrap")}
	if next != nil {
		wraps = append(wraps, derive(next, "key wrap"))
	}
	gw, err := loadGateway(cfg.Keys.GatewayKeyFile, wraps, cfg.Org, log)
	if err != nil {
		return nil, err
	}
	r, err := NewRing(master, gw, escrow)
	if err != nil {
		return nil, err
	}
	if next != nil {
		r.masters = append(r.masters, deriveAll(next))
	}
	return r, nil
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

func loadGateway(path string, wraps [][]byte, org config.Org, log *slog.Logger) (*pcrypto.Key, error) {
	wrap := wraps[0]
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
	var priv []byte
	for _, w := range wraps {
		if priv, err = pcrypto.Unwrap(w, b, []byte(aad)); err == nil {
			break
		}
	}
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
