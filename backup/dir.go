package backup

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Listed is one backup file in a folder.
type Listed struct {
	Name    string
	Path    string
	Size    int64
	Created time.Time // from the manifest; the file's time if unreadable
	ID      string
	Err     error // nil: verified
}

// List returns the backups in dir, oldest first, each verified (against
// trusted when given).
func List(dir string, trusted *pcrypto.Key) ([]Listed, error) {
	names, err := files(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(names))
	for _, n := range names {
		p := filepath.Join(dir, n)
		l := Listed{Name: n, Path: p}
		if st, err := os.Stat(p); err == nil {
			l.Size, l.Created = st.Size(), st.ModTime().UTC()
		}
		m, err := Verify(p, trusted)
		if m.ID != "" {
			l.Created, l.ID = m.Created, m.ID
		}
		l.Err = err
		out = append(out, l)
	}
	return out, nil
}

// files lists backup file names in dir, oldest first (names begin with
// the UTC time they were taken).
func files(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // no backup taken yet
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), "phigate-") && strings.HasSuffix(e.Name(), Ext) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Prune removes the oldest backups in dir so that keep remain, and returns
// the names removed.
func Prune(dir string, keep int) ([]string, error) {
	names, err := files(dir)
	if err != nil || len(names) <= keep {
		return nil, err
	}
	var removed []string
	for _, n := range names[:len(names)-keep] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			return removed, err
		}
		removed = append(removed, n)
	}
	return removed, nil
}
