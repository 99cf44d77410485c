package keys

// Issue 14.3: master key epochs. The database records which master key is
// active (key_epochs); the ring, once bound to it, seals with that key,
// opens with every loaded one, chains keyed hashes through every epoch and
// hands the audit trail each epoch's keys.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// NextMasterFile is where a master-key rotation keeps the new key until
// it has finished: the gateway loads it beside the current one.
func NextMasterFile(cfg config.Config) string { return cfg.Keys.MasterKeyFile + ".next" }

func loadNextMaster(cfg config.Config) ([]byte, error) {
	if cfg.Keys.MasterKeyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(NextMasterFile(cfg))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return decodeMaster(string(b), NextMasterFile(cfg))
}

// epochSecret is what a retired epoch leaves behind, sealed under the
// active key: its keyed-hash keys (stored hashes are chained through
// them) and its audit keys (its entries stay as they were written).
type epochSecret struct {
	Hash     hashKeys `json:"hash"`
	AuditMAC []byte   `json:"audit_mac"`
	AuditEnc []byte   `json:"audit_enc"`
}

func epochPurpose(epoch int64) string { return fmt.Sprintf("key-epoch:%d", epoch) }

func (k *subkeys) secret() epochSecret {
	return epochSecret{Hash: k.hash, AuditMAC: k.auditMAC, AuditEnc: k.auditEnc}
}

func sealEpoch(under *subkeys, epoch int64, s epochSecret) ([]byte, error) {
	plain, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return pcrypto.Wrap(under.wrapKey, plain, []byte(epochPurpose(epoch)))
}

func (r *Ring) master(id string) *subkeys {
	for _, k := range r.masters {
		if k.id == id {
			return k
		}
	}
	return nil
}

func (r *Ring) openEpoch(e store.KeyEpoch) (epochSecret, error) {
	var s epochSecret
	k := r.master(e.SealedBy)
	if k == nil {
		return s, fmt.Errorf("keys: epoch %d's keys are sealed under master key %s, which is not loaded", e.Epoch, e.SealedBy)
	}
	plain, err := pcrypto.Unwrap(k.wrapKey, e.Sealed, []byte(epochPurpose(e.Epoch)))
	if err != nil {
		return s, fmt.Errorf("keys: epoch %d's keys do not open", e.Epoch)
	}
	return s, json.Unmarshal(plain, &s)
}

// Bind makes the ring follow the database: the active epoch's master key
// seals (it must be loaded), earlier epochs' hash and audit keys come
// from key_epochs, and earlier gateway signing keys from gateway_keys. A
// database that was never rotated leaves the ring as it was loaded (the
// key file's key is epoch 1).
func (r *Ring) Bind(ctx context.Context, st store.KeyStore) error {
	eps, err := st.KeyEpochs(ctx)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if len(eps) > 0 {
		if err := r.bindEpochs(eps); err != nil {
			return err
		}
	}
	gks, err := st.GatewayKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	r.history = nil
	for _, gk := range gks {
		if gk.Fingerprint == r.Gateway.Fingerprint() {
			continue
		}
		k, err := pcrypto.ReadKey(gk.PublicKey)
		if err != nil {
			return fmt.Errorf("keys: gateway key %s in the key history: %w", gk.Fingerprint, err)
		}
		r.history = append(r.history, k)
	}
	return nil
}

func (r *Ring) bindEpochs(eps []store.KeyEpoch) error {
	var active *store.KeyEpoch
	for i := range eps {
		switch eps[i].State {
		case store.EpochActive:
			active = &eps[i]
		case store.EpochRotating:
			if r.master(eps[i].KeyID) == nil {
				return fmt.Errorf("keys: a master-key rotation to key %s is under way but that key is not loaded: it is in keys.master_key_file with .next appended; finish the rotation with `phigate keys rotate-master`", eps[i].KeyID)
			}
		}
	}
	if active == nil {
		return errors.New("keys: the database records no active master key")
	}
	cur := r.master(active.KeyID)
	if cur == nil {
		return fmt.Errorf("keys: the database is sealed under master key %s, but the loaded key is %s: wrong keys.master_key_file, or a rotation was not finished (run `phigate keys rotate-master`)",
			active.KeyID, r.masters[0].id)
	}
	var chain []hashKeys
	var audit []AuditEpoch
	for _, e := range eps {
		if e.State != store.EpochRetired {
			continue
		}
		s, err := r.openEpoch(e)
		if err != nil {
			return err
		}
		chain = append(chain, s.Hash)
		audit = append(audit, AuditEpoch{Epoch: e.Epoch, FromSeq: max(e.AuditFromSeq, 1), MAC: s.AuditMAC, Enc: s.AuditEnc})
	}
	chain = append(chain, cur.hash)
	audit = append(audit, AuditEpoch{Epoch: active.Epoch, FromSeq: max(active.AuditFromSeq, 1), MAC: cur.auditMAC, Enc: cur.auditEnc})
	// cur first: it seals, and it opens most values.
	masters := []*subkeys{cur}
	for _, k := range r.masters {
		if k != cur {
			masters = append(masters, k)
		}
	}
	r.cur, r.masters, r.chain, r.audit = cur, masters, chain, audit
	return nil
}

// Verifier is the gateway key's public half that also accepts signatures
// by every earlier gateway key (after Bind): what reading a stored
// message checks its signature against.
func (r *Ring) Verifier() *pcrypto.Key { return r.Gateway.WithEarlier(r.history...) }

// GatewayHistory returns the earlier gateway keys (public) Bind found.
func (r *Ring) GatewayHistory() []*pcrypto.Key { return r.history }

// replaceFile writes b to path atomically (a temporary file in the same
// folder, synced, renamed over path, folder synced): a crash leaves the
// old file or the new one, never a torn one.
func replaceFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
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
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SigningKeysArmored is the gateway key's public half followed by every
// earlier gateway key's (after Bind), in one armored block: what
// `gpg --import` needs to verify any stored message's signature.
func (r *Ring) SigningKeysArmored() ([]byte, error) {
	return pcrypto.PublicKeyring(append([]*pcrypto.Key{r.Gateway}, r.history...)...)
}
