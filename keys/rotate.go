package keys

// Issue 14.3: key rotation.
//
// Master key (RotateMaster), resumable at every step:
//
//  1. The new key is written beside the current one (master key file +
//     ".next"), then the database records the new epoch as rotating.
//     From here every gateway loads both keys and opens values under
//     either; nothing under the new key is ever left without its file.
//  2. Every sealed value (addresses, pending private keys, TOTP secrets,
//     notices, push subscriptions, break-glass reasons) is re-sealed under
//     the new key in batches, one transaction each. A value that already
//     opens under the new key is skipped, so a re-run redoes nothing; the
//     wrapped key files (gateway, DKIM, VAPID) are replaced atomically.
//  3. One transaction re-keys every keyed hash (blind indexes, app
//     passwords, recovery codes, passcodes) by hashing it again under the
//     new key, re-seals the registered recipient keys, seals the retiring
//     epoch's hash and audit keys under the new key, appends the
//     keys.rotate_master entry that ends the old audit epoch and makes the
//     new epoch active. Lookups never see a mix of old and new hashes.
//  4. Step 2 runs again (a value written by an old-key writer meanwhile),
//     then the new key replaces the key file and ".next" goes.
//
// After that the old master key opens nothing in the database or the key
// files; what it still opens is the audit details written before the
// rotation (the trail is append-only) and backups taken before it.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// RotationStore is what the rotations need of the store.
type RotationStore interface {
	store.KeyStore
	store.AuditStore
}

// Rotation runs the key rotations for one gateway (its configuration,
// ring, store and audit trail).
type Rotation struct {
	Cfg   config.Config
	Ring  *Ring
	Store RotationStore
	Audit audit.Sealer
	Actor string // the audit actor ("cli:<user>")
	Log   *slog.Logger
	// Batch is how many values one transaction re-seals (default 200).
	Batch int
	// Limit, when > 0, stops a master-key rotation after re-sealing that
	// many values, with ErrPaused; running it again continues.
	Limit int
	Now   func() time.Time
}

// ErrPaused: the rotation stopped at Limit; run it again to continue.
var ErrPaused = errors.New("keys: rotation paused at the limit; run it again to continue")

// MasterResult says what a master-key rotation did.
type MasterResult struct {
	Epoch    int64
	From, To string // key ids
	Resealed int    // sealed values re-sealed by this run
	Counts   map[string]int
	Resumed  bool
}

func (o *Rotation) batch() int {
	if o.Batch > 0 {
		return o.Batch
	}
	return 200
}

func (o *Rotation) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Rotation) log() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.New(slog.DiscardHandler)
}

// prepare returns the AuditFunc for one entry and the batch to confirm
// once the transaction committed.
func (o *Rotation) prepare(ctx context.Context, e audit.Entry) (*audit.Batch, store.AuditFunc, error) {
	if e.Actor == "" {
		e.Actor = o.Actor
	}
	b, err := audit.Prepare(ctx, o.Audit, e)
	if err != nil {
		return nil, nil, err
	}
	return b, b.Func(), nil
}

// RotateMaster rotates the master key, or continues a rotation that was
// interrupted or paused.
func (o *Rotation) RotateMaster(ctx context.Context) (MasterResult, error) {
	var res MasterResult
	cfg, r := o.Cfg, o.Ring
	if cfg.Keys.MasterKey != "" || cfg.Keys.MasterKeyFile == "" {
		return res, errors.New("keys: the master key is given inline (keys.master_key); rotation needs it in keys.master_key_file, where the new key can replace it")
	}
	eps, err := o.Store.KeyEpochs(ctx)
	if err != nil {
		return res, err
	}
	var active, rotating *store.KeyEpoch
	for i := range eps {
		switch eps[i].State {
		case store.EpochActive:
			active = &eps[i]
		case store.EpochRotating:
			rotating = &eps[i]
		}
	}
	nextRaw, err := loadNextMaster(cfg)
	if err != nil {
		return res, err
	}
	if rotating == nil && active != nil && nextRaw != nil && KeyID(nextRaw) == active.KeyID {
		// Step 3 committed; only the key file is left to replace.
		res.Resumed, res.Epoch, res.To = true, active.Epoch, active.KeyID
		return res, o.finish(ctx, nextRaw, &res)
	}
	if rotating != nil {
		res.Resumed = true
		if nextRaw == nil || KeyID(nextRaw) != rotating.KeyID {
			return res, fmt.Errorf("keys: a rotation to master key %s is under way, but %s does not hold that key", rotating.KeyID, NextMasterFile(cfg))
		}
	}
	if nextRaw == nil {
		nextRaw = pcrypto.RandomBytes(32)
		if err := writeFile(NextMasterFile(cfg), []byte(encodeMaster(nextRaw))); err != nil {
			return res, fmt.Errorf("keys: writing the new master key: %w", err)
		}
		o.log().Warn("wrote the new master key; keep it until the rotation has finished", "file", NextMasterFile(cfg), "key_id", KeyID(nextRaw))
	} else {
		res.Resumed = true
	}
	next := r.master(KeyID(nextRaw))
	if next == nil {
		next = deriveAll(nextRaw)
		r.masters = append(r.masters, next)
	}
	if next == r.cur {
		return res, errors.New("keys: the new master key is the active one")
	}
	res.From, res.To = r.cur.id, next.id
	epoch := int64(2)
	if active != nil {
		epoch = active.Epoch + 1
	}
	if rotating != nil {
		epoch = rotating.Epoch
	} else {
		now := o.now()
		b, fn, err := o.prepare(ctx, audit.Entry{Action: "keys.rotate_master.start", ObjectType: "key", ObjectID: strconv.FormatInt(epoch, 10),
			Outcome: audit.OK, Details: map[string]string{"from_key": r.cur.id, "to_key": next.id}})
		if err != nil {
			return res, err
		}
		err = o.Store.BeginKeyEpoch(ctx, store.KeyEpoch{Epoch: 1, KeyID: r.cur.id, AuditFromSeq: 1, CreatedAt: now},
			store.KeyEpoch{Epoch: epoch, KeyID: next.id, CreatedAt: now}, fn)
		if err != nil {
			return res, fmt.Errorf("keys: recording the rotation: %w", err)
		}
		if err := b.Committed(ctx); err != nil {
			return res, err
		}
	}
	res.Epoch = epoch

	// Step 2.
	n, err := o.resealAll(ctx, next)
	res.Resealed += n
	if err != nil {
		return res, err
	}
	if err := o.rewrapFiles(next); err != nil {
		return res, err
	}

	// Step 3.
	var mark *audit.Batch
	counts, err := o.Store.SwitchKeyEpoch(ctx, store.KeySwitch{
		Epoch: epoch, At: o.now(), NewKeyID: next.id,
		Rehash: func(kind string, old []byte) []byte {
			switch kind {
			case "index":
				return pcrypto.MAC(next.hash.Index, old)
			case "app-password":
				return pcrypto.MAC(next.hash.AppPw, old)
			}
			return pcrypto.MAC(next.hash.Recovery, old)
		},
		RecipientKey: func(oldIdx, newIdx, sealed []byte) ([]byte, error) {
			pub, err := r.OpenField(recipientKeyPurpose(oldIdx), sealed)
			if err != nil {
				return nil, fmt.Errorf("a registered recipient key does not open: %w", err)
			}
			return pcrypto.Wrap(next.fieldKey, pub, []byte(recipientKeyPurpose(newIdx)))
		},
		SealEpoch: func(e store.KeyEpoch) ([]byte, error) {
			var s epochSecret
			switch {
			case e.Sealed == nil && e.KeyID == r.cur.id:
				s = r.cur.secret()
			case e.Sealed == nil:
				return nil, fmt.Errorf("keys: epoch %d has no sealed keys and is not the active one", e.Epoch)
			default:
				var err error
				if s, err = r.openEpoch(e); err != nil {
					return nil, err
				}
			}
			return sealEpoch(next, e.Epoch, s)
		},
		Audit: func(counts map[string]int) store.AuditFunc {
			d := map[string]string{"from_key": r.cur.id, "to_key": next.id}
			for k, v := range counts {
				d[k] = strconv.Itoa(v)
			}
			b, fn, err := o.prepare(ctx, audit.Entry{Action: audit.KeySwitchAction, ObjectType: "key",
				ObjectID: strconv.FormatInt(epoch, 10), Outcome: audit.OK, Details: d})
			if err != nil {
				return func(int64, []byte) ([]store.AuditRecord, error) { return nil, err }
			}
			mark = b
			return fn
		},
	})
	if err != nil {
		return res, fmt.Errorf("keys: switching to the new key: %w", err)
	}
	res.Counts = counts
	if err := mark.Committed(ctx); err != nil {
		return res, err
	}
	// From here the database is under the new key: the ring follows it
	// (this process's audit trail must not write again: its keys are
	// the old epoch's).
	if err := r.Bind(ctx, o.Store); err != nil {
		return res, err
	}
	return res, o.finish(ctx, nextRaw, &res)
}

// finish runs step 4: a last re-seal pass, then the key file.
func (o *Rotation) finish(ctx context.Context, nextRaw []byte, res *MasterResult) error {
	next := o.Ring.master(KeyID(nextRaw))
	if next == nil {
		next = deriveAll(nextRaw)
		o.Ring.masters = append(o.Ring.masters, next)
	}
	lim := o.Limit
	o.Limit = 0 // the switch is done: the last pass runs whole
	n, err := o.resealAll(ctx, next)
	o.Limit = lim
	res.Resealed += n
	if err != nil {
		return err
	}
	if err := o.rewrapFiles(next); err != nil {
		return err
	}
	if err := replaceFile(o.Cfg.Keys.MasterKeyFile, []byte(encodeMaster(nextRaw))); err != nil {
		return fmt.Errorf("keys: replacing the master key file: %w", err)
	}
	if err := os.Remove(NextMasterFile(o.Cfg)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := syncDir(dirOf(o.Cfg.Keys.MasterKeyFile)); err != nil {
		return err
	}
	o.log().Info("master key rotated", "key_id", next.id)
	return nil
}

// sealedPurpose is the purpose each sealed column's values were sealed
// for, and whether under the wrap key (private keys) or the field key.
// These mirror identity (emailPurpose, pendingKeyPurpose, totpPurpose),
// notify (PayloadPurpose, subPurpose) and portal (break-glass reasons);
// TestRotateMasterEndToEnd reads every kind back through those packages.
func sealedPurpose(c store.SealedColumn, id string) (purpose string, wrap bool) {
	switch c.Table + "." + c.Column {
	case "users.email_enc":
		return "email:" + id, false
	case "users.private_key_wrapped":
		return "pending-key:" + id, true
	case "users.totp_secret_enc":
		return "totp:" + id, false
	case "outbox.payload":
		return "outbox:" + id, false
	case "push_subscriptions.sub_enc":
		return "push:" + id, false
	case "break_glass.reason_enc":
		return "break-glass:" + id, false
	}
	panic("keys: no purpose for " + c.Table + "." + c.Column)
}

func recipientKeyPurpose(idx []byte) string { return fmt.Sprintf("recipient-key:%x", idx) }

// resealAll re-seals under next every sealed value that does not open
// under it yet; it returns how many it wrote.
func (o *Rotation) resealAll(ctx context.Context, next *subkeys) (int, error) {
	eps, err := o.Store.KeyEpochs(ctx)
	if err != nil {
		return 0, err
	}
	var epoch int64
	for _, e := range eps {
		if e.KeyID == next.id {
			epoch = e.Epoch
		}
	}
	total := 0
	for _, c := range store.SealedColumns {
		after := ""
		for {
			page, err := o.Store.SealedPage(ctx, c, after, o.batch())
			if err != nil {
				return total, err
			}
			if len(page) == 0 {
				break
			}
			after = page[len(page)-1].ID
			var todo []store.SealedValue
			for _, v := range page {
				if o.Limit > 0 && total+len(todo) >= o.Limit {
					break
				}
				purpose, wrap := sealedPurpose(c, v.ID)
				key := func(k *subkeys) []byte { return k.fieldKey }
				if wrap {
					key = func(k *subkeys) []byte { return k.wrapKey }
				}
				if _, err := pcrypto.Unwrap(key(next), v.Old, []byte(purpose)); err == nil {
					continue // already under the new key
				}
				plain, err := o.Ring.open(key, purpose, v.Old)
				if err != nil {
					return total, fmt.Errorf("keys: %s.%s of %s opens under no loaded master key", c.Table, c.Column, v.ID)
				}
				v.New, err = pcrypto.Wrap(key(next), plain, []byte(purpose))
				clear(plain)
				if err != nil {
					return total, err
				}
				todo = append(todo, v)
			}
			if len(todo) > 0 {
				n, err := o.Store.Reseal(ctx, c, epoch, todo)
				total += n
				if err != nil {
					return total, err
				}
			}
			if o.Limit > 0 && total >= o.Limit {
				return total, ErrPaused
			}
		}
	}
	return total, nil
}

// rewrapFiles re-wraps the key files kept under the master key (gateway,
// DKIM, VAPID) under next, each replaced atomically; a file already under
// next, or not created yet, is left.
func (o *Rotation) rewrapFiles(next *subkeys) error {
	for _, f := range []struct{ path, purpose string }{
		{o.Cfg.Keys.GatewayKeyFile, "gateway-key"},
		{o.Cfg.Keys.DKIMKeyFile, dkimPurpose},
		{o.Cfg.Keys.VAPIDKeyFile, vapidPurpose},
	} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := pcrypto.Unwrap(next.wrapKey, b, []byte(f.purpose)); err == nil {
			continue
		}
		plain, err := o.Ring.UnwrapPrivate(f.purpose, b)
		if err != nil {
			return fmt.Errorf("keys: %s opens under no loaded master key", f.path)
		}
		sealed, err := pcrypto.Wrap(next.wrapKey, plain, []byte(f.purpose))
		clear(plain)
		if err != nil {
			return err
		}
		if err := replaceFile(f.path, sealed); err != nil {
			return fmt.Errorf("keys: re-wrapping %s: %w", f.path, err)
		}
	}
	return nil
}

// SigningResult says what a signing-key rotation did.
type SigningResult struct{ Old, New string } // fingerprints

// RotateSigning replaces the gateway signing key. The old key's public
// half stays in gateway_keys, so messages it signed still verify; its
// private half is gone with the old file. Resumable: the new key waits in
// the key file + ".next" until the database has recorded both.
func (o *Rotation) RotateSigning(ctx context.Context) (SigningResult, error) {
	r, path := o.Ring, o.Cfg.Keys.GatewayKeyFile
	nextPath := path + ".next"
	const aad = "gateway-key"
	var next *pcrypto.Key
	b, err := os.ReadFile(nextPath)
	switch {
	case err == nil:
		plain, err := r.UnwrapPrivate(aad, b)
		if err != nil {
			return SigningResult{}, fmt.Errorf("keys: %s does not open under the master key", nextPath)
		}
		if next, err = pcrypto.ReadKey(plain); err != nil {
			return SigningResult{}, err
		}
	case errors.Is(err, os.ErrNotExist):
		if next, err = pcrypto.GenerateKey(pcrypto.KeyOptions{Name: o.Cfg.Org.Name + " gateway", Email: o.Cfg.Org.NotifyFrom}); err != nil {
			return SigningResult{}, err
		}
		priv, err := next.PrivateBytes()
		if err != nil {
			return SigningResult{}, err
		}
		if b, err = r.WrapPrivate(aad, priv); err != nil {
			return SigningResult{}, err
		}
		if err := writeFile(nextPath, b); err != nil {
			return SigningResult{}, err
		}
	default:
		return SigningResult{}, err
	}
	old := r.Gateway
	res := SigningResult{Old: old.Fingerprint(), New: next.Fingerprint()}
	if res.Old != res.New {
		oldPub, err := old.PublicArmored()
		if err != nil {
			return res, err
		}
		newPub, err := next.PublicArmored()
		if err != nil {
			return res, err
		}
		now := o.now()
		bt, fn, err := o.prepare(ctx, audit.Entry{Action: "keys.rotate_signing", ObjectType: "key", ObjectID: res.New,
			Outcome: audit.OK, Details: map[string]string{"old": res.Old, "new": res.New}})
		if err != nil {
			return res, err
		}
		if err := o.Store.RotateGatewayKey(ctx, store.GatewayKey{Fingerprint: res.Old, PublicKey: oldPub, CreatedAt: now, RetiredAt: &now},
			store.GatewayKey{Fingerprint: res.New, PublicKey: newPub, CreatedAt: now}, fn); err != nil {
			return res, fmt.Errorf("keys: recording the new signing key: %w", err)
		}
		if err := bt.Committed(ctx); err != nil {
			return res, err
		}
		if err := replaceFile(path, b); err != nil {
			return res, fmt.Errorf("keys: replacing %s: %w", path, err)
		}
	}
	if err := os.Remove(nextPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	r.Gateway = next
	return res, r.Bind(ctx, o.Store)
}

// EscrowResult says what an escrow re-wrap did.
type EscrowResult struct {
	Old, New  string // fingerprints
	Rewrapped int    // messages whose key packets now name the new key
	Skipped   int    // messages with no packet for the old key (done before, or never escrowed to it)
	Copies    int    // sender's and reviewers' copies re-wrapped
}

// RewrapEscrow re-addresses every stored message's escrow key packet
// (body and inbox summary) from old (the retired escrow key, unlocked) to
// the configured escrow key: the session key is decrypted from the old
// escrow packet only and encrypted to the new key in its place; every
// other packet and the encrypted data stay byte for byte. Batches commit
// one at a time with their keys.rewrap_escrow entry, so an interrupted
// run is simply run again.
func (o *Rotation) RewrapEscrow(ctx context.Context, old *pcrypto.Key) (EscrowResult, error) {
	nw := o.Ring.Escrow
	res := EscrowResult{Old: old.Fingerprint(), New: nw.Fingerprint()}
	if !old.IsPrivate() {
		return res, errors.New("keys: the old escrow key must be the unlocked private key")
	}
	if res.Old == res.New {
		return res, errors.New("keys: keys.escrow_public_key_file still names the old escrow key: point it at the new key's public half first")
	}
	if err := o.rewrapCopies(ctx, old, &res); err != nil {
		return res, err
	}
	after := ""
	for {
		page, err := o.Store.MessageKeyPage(ctx, after, o.batch())
		if err != nil {
			return res, err
		}
		if len(page) == 0 {
			return res, nil
		}
		after = page[len(page)-1].MessageID
		var olds, news []store.MessageKeys
		for _, m := range page {
			kp, err1 := rewrapIfAny(m.KeyPackets, old, nw)
			sk, err2 := rewrapIfAny(m.SummaryKeys, old, nw)
			if err := errors.Join(err1, err2); err != nil {
				return res, fmt.Errorf("keys: message %s: %w", m.MessageID, err)
			}
			if kp == nil && sk == nil {
				res.Skipped++
				continue
			}
			n := m
			if kp != nil {
				n.KeyPackets = kp
			}
			if sk != nil {
				n.SummaryKeys = sk
			}
			olds, news = append(olds, m), append(news, n)
		}
		if len(olds) == 0 {
			continue
		}
		var bt *audit.Batch
		n, err := o.Store.ReplaceMessageKeys(ctx, olds, news, func(n int) store.AuditFunc {
			b, fn, err := o.prepare(ctx, audit.Entry{Action: "keys.rewrap_escrow", ObjectType: "key", ObjectID: res.New,
				Outcome: audit.OK, Details: map[string]string{"old": res.Old, "new": res.New, "messages": strconv.Itoa(n)}})
			if err != nil {
				return func(int64, []byte) ([]store.AuditRecord, error) { return nil, err }
			}
			bt = b
			return fn
		})
		if err != nil {
			return res, err
		}
		if bt != nil {
			if err := bt.Committed(ctx); err != nil {
				return res, err
			}
		}
		res.Rewrapped += n
	}
}

// rewrapCopies does for the message copies (store/copies.go) what
// RewrapEscrow does for messages.
func (o *Rotation) rewrapCopies(ctx context.Context, old *pcrypto.Key, res *EscrowResult) error {
	var after store.CopyKeys
	for {
		page, err := o.Store.CopyKeyPage(ctx, after, o.batch())
		if err != nil || len(page) == 0 {
			return err
		}
		after = page[len(page)-1]
		var olds, news []store.CopyKeys
		for _, c := range page {
			kp, err := rewrapIfAny(c.KeyPackets, old, o.Ring.Escrow)
			if err != nil {
				return fmt.Errorf("keys: copy of message %s: %w", c.MessageID, err)
			}
			if kp != nil {
				n := c
				n.KeyPackets = kp
				olds, news = append(olds, c), append(news, n)
			}
		}
		if len(olds) == 0 {
			continue
		}
		var bt *audit.Batch
		n, err := o.Store.ReplaceCopyKeys(ctx, olds, news, func(n int) store.AuditFunc {
			b, fn, err := o.prepare(ctx, audit.Entry{Action: "keys.rewrap_escrow", ObjectType: "key", ObjectID: res.New,
				Outcome: audit.OK, Details: map[string]string{"old": res.Old, "new": res.New, "copies": strconv.Itoa(n)}})
			if err != nil {
				return func(int64, []byte) ([]store.AuditRecord, error) { return nil, err }
			}
			bt = b
			return fn
		})
		if err != nil {
			return err
		}
		if bt != nil {
			if err := bt.Committed(ctx); err != nil {
				return err
			}
		}
		res.Copies += n
	}
}

// rewrapIfAny is pcrypto.Rewrap, with nil (nothing to do) when the packets
// hold none for from.
func rewrapIfAny(packets []byte, from, to *pcrypto.Key) ([]byte, error) {
	if len(packets) == 0 {
		return nil, nil
	}
	out, err := pcrypto.Rewrap(packets, from, to)
	if errors.Is(err, pcrypto.ErrNoKeyPacket) {
		return nil, nil
	}
	return out, err
}

func encodeMaster(k []byte) string { return base64.StdEncoding.EncodeToString(k) + "\n" }

func dirOf(path string) string { return filepath.Dir(path) }
