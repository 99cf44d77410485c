// Package backup writes and reads phigate's encrypted backups (issue 14):
// one file holding a consistent copy of the SQLite store, the key files as
// stored (wrapped under the master key, never unwrapped), the audit
// checkpoints and a digest of the configuration, encrypted to the escrow
// (or a backup) public key and signed by the gateway key.
//
// The file is a tar archive of three members:
//
//	manifest.json  what the backup is (id, time, signer, recipient, the
//	               payload's SHA-256 and size); no PHI, no secret
//	manifest.sig   a detached OpenPGP signature over manifest.json by the
//	               gateway key
//	payload.pgp    an OpenPGP message (signed by the gateway key inside,
//	               encrypted to the recipient) whose plaintext is a tar of
//	               the state
//
// so Verify checks integrity and origin without the escrow passphrase, and
// only the holder of the recipient's private key can read the payload.
package backup

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

// Format names this layout; Verify refuses any other.
const Format = "phigate-backup/1"

// Ext ends every backup file's name.
const Ext = ".phigate-backup"

// Member names in the outer archive, in this order.
const (
	memberManifest = "manifest.json"
	memberSig      = "manifest.sig"
	memberPayload  = "payload.pgp"
)

// Names inside the payload.
const (
	payloadManifest = "manifest.json"
	payloadConfig   = "config.sha256"
	payloadDB       = "db/phigate.db" // SQLite: the VACUUM INTO snapshot
	payloadDump     = "db/dump.jsonl" // PostgreSQL: store.Dump's logical dump
	payloadFiles    = "files/"
)

// Bounds on what Verify and Restore read before trusting it.
const (
	maxManifest  = 64 << 10
	maxSignature = 16 << 10
	maxFile      = 64 << 20 // one key or checkpoint file
)

// Manifest describes one backup. It is outside the encryption, so it holds
// nothing that is PHI or secret.
type Manifest struct {
	Format             string    `json:"format"`
	ID                 string    `json:"id"`
	Created            time.Time `json:"created"`
	Store              string    `json:"store"` // "sqlite" or "postgres"
	GatewayFingerprint string    `json:"gateway_fingerprint"`
	GatewayKey         string    `json:"gateway_key"` // armored public key
	RecipientFPR       string    `json:"recipient_fingerprint"`
	PayloadSHA256      string    `json:"payload_sha256"`
	PayloadSize        int64     `json:"payload_size"`
}

// ErrInvalid wraps every reason a file is not an intact backup signed by
// the expected key.
var ErrInvalid = errors.New("backup: not an intact phigate backup")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func newID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// FileName is the name Create gives a backup taken at t.
func FileName(t time.Time, id string) string {
	// Milliseconds: names sort in the order taken, which List and Prune
	// rely on, even for backups taken within one second.
	return "phigate-" + t.UTC().Format("20060102T150405.000Z") + "-" + id + Ext
}

// privateTemp makes an owner-only temporary folder inside dir (so a rename
// out of it stays on one file system).
func privateTemp(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".tmp-")
	if err != nil {
		return "", err
	}
	return tmp, os.Chmod(tmp, 0o700)
}

// scrub overwrites a file with zeros, syncs and removes it: best effort
// against the copy being read back from the disk's free space (it does not
// reach blocks a copy-on-write file system or an SSD keeps elsewhere).
func scrub(path string) {
	if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		if st, err := f.Stat(); err == nil {
			zero := make([]byte, 64<<10)
			for left := st.Size(); left > 0; left -= int64(len(zero)) {
				if _, err := f.Write(zero[:min(left, int64(len(zero)))]); err != nil {
					break
				}
			}
			f.Sync()
		}
		f.Close()
	}
	os.Remove(path)
}

// scrubDir scrubs every regular file under dir, then removes dir.
func scrubDir(dir string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			scrub(p)
		}
		return nil
	})
	os.RemoveAll(dir)
}

// staleTemp is the age past which a temporary folder in the backup folder
// is taken for one a crash left behind (no backup or restore runs that long
// on the stores phigate is sized for; see docs/perf.md).
const staleTemp = 6 * time.Hour

// scrubStale scrubs temporary folders in dir last changed before cutoff.
func scrubStale(dir string, cutoff time.Time) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if st, err := e.Info(); err == nil && st.ModTime().Before(cutoff) {
			scrubDir(filepath.Join(dir, e.Name()))
		}
	}
}

// readManifest parses and checks the outer manifest and its signature.
// trusted, when set, is the gateway key the signature must be by.
func readManifest(raw, sig []byte, trusted *pcrypto.Key) (Manifest, *pcrypto.Key, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, nil, invalid("manifest: %v", err)
	}
	if m.Format != Format {
		return m, nil, invalid("format %q, want %q", m.Format, Format)
	}
	key, err := pcrypto.ReadKey([]byte(m.GatewayKey))
	if err != nil || key.IsPrivate() || key.Fingerprint() != m.GatewayFingerprint {
		return m, nil, invalid("the manifest's gateway key does not match its fingerprint")
	}
	if trusted != nil && !trusted.Accepts(key.Fingerprint()) { // this gateway's key, or an earlier one (issue 14.3)
		return m, nil, invalid("signed by key %s, not by this gateway's key %s", key.Fingerprint(), trusted.Fingerprint())
	}
	if err := pcrypto.VerifyDetached(bytes.NewReader(sig), bytes.NewReader(raw), key); err != nil {
		return m, nil, invalid("manifest signature: %v", err)
	}
	return m, key, nil
}

// outer walks a backup file's members in order; payload gets a reader of
// payload.pgp that hashes what it reads.
type outer struct {
	f  *os.File
	tr *tar.Reader
}

func openOuter(path string) (*outer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &outer{f: f, tr: tar.NewReader(f)}, nil
}

func (o *outer) Close() error { return o.f.Close() }

func (o *outer) member(name string, limit int64) (*tar.Header, error) {
	h, err := o.tr.Next()
	if err != nil {
		return nil, invalid("reading member %s: %v", name, err)
	}
	if h.Name != name || h.Typeflag != tar.TypeReg || h.Size < 0 || (limit > 0 && h.Size > limit) {
		return nil, invalid("member %q where %s was expected", h.Name, name)
	}
	return h, nil
}

func (o *outer) small(name string, limit int64) ([]byte, error) {
	if _, err := o.member(name, limit); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(o.tr, limit))
	if err != nil {
		return nil, invalid("reading %s: %v", name, err)
	}
	return b, nil
}

// head reads and checks manifest and signature, and positions o at the
// payload, returning its header.
func (o *outer) head(trusted *pcrypto.Key) (Manifest, *pcrypto.Key, error) {
	raw, err := o.small(memberManifest, maxManifest)
	if err != nil {
		return Manifest{}, nil, err
	}
	sig, err := o.small(memberSig, maxSignature)
	if err != nil {
		return Manifest{}, nil, err
	}
	m, key, err := readManifest(raw, sig, trusted)
	if err != nil {
		return m, nil, err
	}
	h, err := o.member(memberPayload, 0)
	if err != nil {
		return m, nil, err
	}
	if h.Size != m.PayloadSize {
		return m, nil, invalid("payload is %d bytes, the manifest says %d", h.Size, m.PayloadSize)
	}
	return m, key, nil
}

// checkTail requires the payload's hash to match and nothing to follow it.
func (o *outer) checkTail(m Manifest, sum []byte) error {
	if hex.EncodeToString(sum) != m.PayloadSHA256 {
		return invalid("payload SHA-256 does not match the signed manifest")
	}
	if _, err := o.tr.Next(); err != io.EOF {
		return invalid("data after the payload")
	}
	return nil
}

// Verify checks, without decrypting, that path is an intact backup: the
// manifest is signed by its gateway key (by trusted, when given) and the
// payload is byte for byte the one the manifest names.
func Verify(path string, trusted *pcrypto.Key) (Manifest, error) {
	o, err := openOuter(path)
	if err != nil {
		return Manifest{}, err
	}
	defer o.Close()
	m, _, err := o.head(trusted)
	if err != nil {
		return m, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, o.tr); err != nil {
		return m, invalid("reading the payload: %v", err)
	}
	return m, o.checkTail(m, h.Sum(nil))
}
