package backup

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	pcrypto "github.com/phigate/phigate/crypto"
)

// ErrNotEmpty refuses a restore over existing state.
var ErrNotEmpty = errors.New("backup: the target already holds phigate state")

// Targets says where a restore puts each part.
type Targets struct {
	DB string // the SQLite database file
	// Load, instead of DB, loads a PostgreSQL dump into the store (all or
	// nothing); Empty says whether that store holds no rows yet.
	Load  func(r io.Reader) error
	Empty func() (bool, error)
	// Temp is the folder for temporary files (default: DB's folder).
	Temp string
	// Files maps backup names to paths; each must not exist yet.
	Files map[string]string
	// IfAbsent maps backup names to paths written only when absent
	// (configuration, such as the escrow public key).
	IfAbsent map[string]string
}

// CheckEmpty returns ErrNotEmpty when any state target exists (a database
// file with content, or any state file).
func (t Targets) CheckEmpty() error {
	if t.Load != nil {
		empty, err := t.Empty()
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: the database holds rows", ErrNotEmpty)
		}
	}
	for _, p := range []string{t.DB, t.DB + "-wal"} {
		if st, err := os.Stat(p); t.Load == nil && err == nil && st.Size() > 0 {
			return fmt.Errorf("%w: %s exists", ErrNotEmpty, p)
		}
	}
	for _, name := range sortedKeys(t.Files) {
		if _, err := os.Lstat(t.Files[name]); err == nil {
			return fmt.Errorf("%w: %s exists", ErrNotEmpty, t.Files[name])
		}
	}
	return nil
}

// Restored is what Restore put in place.
type Restored struct {
	Manifest
	ConfigDigest string
	Files        []string // backup names written
}

// Restore decrypts the backup at path with key (the recipient's unlocked
// private key) and puts its state at t. It refuses a non-empty target,
// and writes nothing there unless the whole backup verified: outer
// signature and hash, the payload's own signature by the same gateway key,
// and the inner manifest naming the same backup.
func Restore(path string, key, trusted *pcrypto.Key, t Targets) (Restored, error) {
	if (t.Load == nil) == (t.DB == "") || (t.Load != nil && t.Empty == nil) {
		return Restored{}, errors.New("backup: restore needs one target database")
	}
	if err := t.CheckEmpty(); err != nil {
		return Restored{}, err
	}
	if t.Temp == "" {
		t.Temp = filepath.Dir(t.DB)
	}
	if err := os.MkdirAll(t.Temp, 0o700); err != nil {
		return Restored{}, err
	}
	tmp, err := privateTemp(t.Temp)
	if err != nil {
		return Restored{}, err
	}
	defer scrubDir(tmp)
	r, got, err := extract(path, key, trusted, tmp)
	if err != nil {
		return r, err
	}
	switch {
	case t.Load == nil && !got[payloadDB]:
		return r, errors.New("backup: this backup holds a PostgreSQL store: restore it with store.url set")
	case t.Load != nil && !got[payloadDump]:
		return r, errors.New("backup: this backup holds an SQLite store: restore it without store.url, then phigate store migrate")
	}
	return r, place(tmp, got, t, &r)
}

// extract decrypts and unpacks the payload into tmp, returning the names
// found.
func extract(path string, key, trusted *pcrypto.Key, tmp string) (Restored, map[string]bool, error) {
	var r Restored
	o, err := openOuter(path)
	if err != nil {
		return r, nil, err
	}
	defer o.Close()
	m, signer, err := o.head(trusted)
	r.Manifest = m
	if err != nil {
		return r, nil, err
	}
	h := sha256.New()
	cipher := io.TeeReader(o.tr, h)
	plain, err := pcrypto.OpenStream(cipher, key, signer)
	if err != nil {
		return r, nil, fmt.Errorf("backup: decrypting: %w", err)
	}
	got := map[string]bool{}
	tr := tar.NewReader(plain)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r, nil, invalid("payload: %v", err)
		}
		if err := unpack(tr, hd, tmp, m, &r); err != nil {
			return r, nil, err
		}
		got[hd.Name] = true
	}
	// The signature and integrity check come at the end of the message.
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return r, nil, invalid("payload: %v", err)
	}
	if st := plain.Status(); st != pcrypto.SigVerified {
		return r, nil, invalid("payload signature: %s", st)
	}
	if _, err := io.Copy(io.Discard, cipher); err != nil {
		return r, nil, invalid("payload: %v", err)
	}
	return r, got, o.checkTail(m, h.Sum(nil))
}

// unpack handles one payload member: the inner manifest and config digest
// are read, the rest written into tmp under a flattened name.
func unpack(tr *tar.Reader, hd *tar.Header, tmp string, m Manifest, r *Restored) error {
	if hd.Typeflag != tar.TypeReg || hd.Size < 0 {
		return invalid("payload member %q is not a file", hd.Name)
	}
	switch {
	case hd.Name == payloadManifest:
		var inner Manifest
		b, err := io.ReadAll(io.LimitReader(tr, maxManifest))
		if err != nil || json.Unmarshal(b, &inner) != nil || inner.ID != m.ID || inner.GatewayFingerprint != m.GatewayFingerprint {
			return invalid("the payload belongs to another backup")
		}
		return nil
	case hd.Name == payloadConfig:
		b, err := io.ReadAll(io.LimitReader(tr, 1024))
		r.ConfigDigest = strings.TrimSpace(string(b))
		return err
	case hd.Name == payloadDB, hd.Name == payloadDump:
	case strings.HasPrefix(hd.Name, payloadFiles) && validName(strings.TrimPrefix(hd.Name, payloadFiles)):
		if hd.Size > maxFile {
			return invalid("payload member %q too large", hd.Name)
		}
	default:
		return invalid("unexpected payload member %q", hd.Name)
	}
	f, err := os.OpenFile(filepath.Join(tmp, flat(hd.Name)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(f, tr, hd.Size); err != nil {
		return invalid("payload member %q: %v", hd.Name, err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, `/\`)
}

func flat(name string) string { return strings.ReplaceAll(name, "/", "__") }

// place moves the extracted files to their targets, the SQLite database
// last: its presence is what marks the target as no longer empty. A
// PostgreSQL dump loads first, in one transaction, so a failed load
// leaves nothing behind.
func place(tmp string, got map[string]bool, t Targets, r *Restored) error {
	if t.Load != nil {
		f, err := os.Open(filepath.Join(tmp, flat(payloadDump)))
		if err != nil {
			return err
		}
		err = t.Load(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("backup: loading the database: %w", err)
		}
	}
	for _, name := range sortedKeys(t.IfAbsent) {
		if _, err := os.Lstat(t.IfAbsent[name]); err == nil || !got[payloadFiles+name] {
			continue
		}
		if err := move(filepath.Join(tmp, flat(payloadFiles+name)), t.IfAbsent[name]); err != nil {
			return err
		}
		r.Files = append(r.Files, name)
	}
	for _, name := range sortedKeys(t.Files) {
		if !got[payloadFiles+name] {
			continue
		}
		if err := move(filepath.Join(tmp, flat(payloadFiles+name)), t.Files[name]); err != nil {
			return err
		}
		r.Files = append(r.Files, name)
	}
	if t.Load != nil {
		return nil
	}
	return move(filepath.Join(tmp, flat(payloadDB)), t.DB)
}

// move renames src to dst (never over an existing dst), or copies it when
// they are on different file systems.
func move(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%w: %s appeared during the restore", ErrNotEmpty, dst)
	}
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
