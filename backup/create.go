package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

// Source is what Create backs up.
type Source struct {
	// DB is the SQLite store's database; it is copied with VACUUM INTO, a
	// consistent snapshot taken while the gateway keeps writing.
	DB *sql.DB
	// Dump, instead of DB, writes a logical dump of a PostgreSQL store
	// (store.Dump: one REPEATABLE READ transaction).
	Dump func(ctx context.Context, w io.Writer) error
	// Files maps a name in the backup to a file on disk (wrapped keys,
	// the escrow public key, the audit checkpoints), copied as stored. A
	// missing file is left out. They are read BEFORE the database, so a
	// checkpoint never names an audit entry the database copy lacks.
	Files map[string]string
	// ConfigDigest identifies the configuration the gateway ran with.
	ConfigDigest string
	Signer       *pcrypto.Key // the gateway key (private)
	Recipient    *pcrypto.Key // escrow or backup public key
	Now          func() time.Time
}

// Info is one backup file written.
type Info struct {
	Manifest
	Path string
	Size int64
}

// Create writes one backup of src into dir and returns it. Nothing it
// writes outside its owner-only temporary folder is plaintext, and that
// folder is scrubbed before Create returns.
func Create(ctx context.Context, dir string, src Source) (Info, error) {
	if (src.DB == nil) == (src.Dump == nil) || src.Signer == nil || !src.Signer.IsPrivate() || src.Recipient == nil {
		return Info{}, errors.New("backup: one database, the signing key and the recipient key are required")
	}
	now := time.Now
	if src.Now != nil {
		now = src.Now
	}
	tmp, err := privateTemp(dir)
	if err != nil {
		return Info{}, fmt.Errorf("backup: %w", err)
	}
	defer scrubDir(tmp)
	scrubStale(dir, now().Add(-staleTemp))
	gwPub, err := src.Signer.Public().PublicArmored()
	if err != nil {
		return Info{}, err
	}
	kind := "sqlite"
	if src.Dump != nil {
		kind = "postgres"
	}
	m := Manifest{Format: Format, ID: newID(), Created: now().UTC().Round(0), Store: kind,
		GatewayFingerprint: src.Signer.Fingerprint(), GatewayKey: string(gwPub),
		RecipientFPR: src.Recipient.Fingerprint()}
	payload := filepath.Join(tmp, memberPayload)
	sum, size, err := writePayload(ctx, payload, tmp, m, src)
	if err != nil {
		return Info{}, err
	}
	m.PayloadSHA256, m.PayloadSize = hex.EncodeToString(sum), size
	final := filepath.Join(dir, FileName(m.Created, m.ID))
	if err := writeOuter(final, filepath.Join(tmp, "outer"), payload, m, src.Signer); err != nil {
		return Info{}, err
	}
	st, err := os.Stat(final)
	if err != nil {
		return Info{}, err
	}
	return Info{Manifest: m, Path: final, Size: st.Size()}, nil
}

// writePayload streams the state as a tar through OpenPGP into path and
// returns the ciphertext's SHA-256 and size.
func writePayload(ctx context.Context, path, tmp string, m Manifest, src Source) ([]byte, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	cw := &countHash{w: f, h: sha256.New()}
	enc, err := pcrypto.SealStream(cw, src.Signer, src.Recipient)
	if err != nil {
		return nil, 0, err
	}
	tw := tar.NewWriter(enc)
	inner, _ := json.Marshal(m)
	if err := addBytes(tw, payloadManifest, inner, m.Created); err != nil {
		return nil, 0, err
	}
	if err := addBytes(tw, payloadConfig, []byte(src.ConfigDigest+"\n"), m.Created); err != nil {
		return nil, 0, err
	}
	for _, name := range sortedKeys(src.Files) {
		if err := addFile(tw, payloadFiles+name, src.Files[name]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("backup: %s: %w", name, err)
		}
	}
	// After the files: see Source.Files.
	if err := addDatabase(ctx, tw, tmp, src); err != nil {
		return nil, 0, fmt.Errorf("backup: database snapshot: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, 0, err
	}
	if err := enc.Close(); err != nil {
		return nil, 0, err
	}
	if err := f.Sync(); err != nil {
		return nil, 0, err
	}
	return cw.h.Sum(nil), cw.n, f.Close()
}

// addDatabase writes the database's snapshot (SQLite) or dump (PostgreSQL)
// to a file in tmp, adds it to tw, and scrubs it.
func addDatabase(ctx context.Context, tw *tar.Writer, tmp string, src Source) error {
	if src.Dump == nil {
		snap := filepath.Join(tmp, "snapshot.db")
		defer scrub(snap)
		if _, err := src.DB.ExecContext(ctx, `VACUUM INTO ?`, snap); err != nil {
			return err
		}
		return addFile(tw, payloadDB, snap)
	}
	dump := filepath.Join(tmp, "dump.jsonl")
	defer scrub(dump)
	f, err := os.OpenFile(dump, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = src.Dump(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return addFile(tw, payloadDump, dump)
}

// writeOuter assembles manifest, signature and payload into final, via a
// temporary file renamed into place only once complete and synced.
func writeOuter(final, tmpPath, payload string, m Manifest, signer *pcrypto.Key) error {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	var sig bytes.Buffer
	if err := pcrypto.DetachSign(&sig, signer, bytes.NewReader(raw)); err != nil {
		return err
	}
	f, err := os.OpenFile(tmpPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := addBytes(tw, memberManifest, raw, m.Created); err != nil {
		return err
	}
	if err := addBytes(tw, memberSig, sig.Bytes(), m.Created); err != nil {
		return err
	}
	if err := addFile(tw, memberPayload, payload); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpPath, final); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(final)); err == nil {
		d.Sync() // the rename itself durable
		d.Close()
	}
	return nil
}

func addBytes(tw *tar.Writer, name string, b []byte, at time.Time) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: at, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func addFile(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size(), ModTime: st.ModTime().UTC(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	// A file still growing (the checkpoint file) is copied up to the size
	// read above: tar needs the size first.
	_, err = io.CopyN(tw, f, st.Size())
	return err
}

// countHash hashes and counts what passes through to w.
type countHash struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countHash) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}
