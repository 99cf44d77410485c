package store

// Issue 14.3: key rotation. The store keeps the master key epochs, the
// gateway signing keys' public halves, and runs the re-sealing that a
// master-key rotation and an escrow-key replacement need, each step in its
// own transaction with its audit entry (invariant 8). It never sees a key:
// package keys hands it the functions that re-seal.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Key epoch states (key_epochs.state).
const (
	EpochActive   = "active"
	EpochRotating = "rotating"
	EpochRetired  = "retired"
)

// KeyEpoch is one master key the database has been sealed under.
type KeyEpoch struct {
	Epoch        int64
	KeyID        string // public identifier of the master key (never the key)
	State        string
	AuditFromSeq int64  // first audit entry under this epoch's keys
	Sealed       []byte // retired epochs: their hash and audit subkeys, sealed under SealedBy
	SealedBy     string
	CreatedAt    time.Time
	RotatedAt    *time.Time
	Resealed     int64 // values re-sealed so far by the rotation to this epoch
}

// GatewayKey is a gateway signing key's public half.
type GatewayKey struct {
	Fingerprint string
	PublicKey   []byte
	CreatedAt   time.Time
	RetiredAt   *time.Time // nil: the key in use
}

// SealedColumn is a column holding values sealed under the master key's
// field or wrap key, found by the row's primary key ID.
type SealedColumn struct {
	Table, Column, ID string
	Where             string // extra condition ("" none)
}

// SealedColumns are every AEAD-sealed column under the master key that a
// rotation re-seals in place (recipient_keys.public_key_enc, whose purpose
// names the blind index, is re-sealed with it in SwitchKeyEpoch).
var SealedColumns = []SealedColumn{
	{Table: "users", Column: "email_enc", ID: "id"},
	{Table: "users", Column: "private_key_wrapped", ID: "id", Where: "key_wrap = 'master'"},
	{Table: "users", Column: "totp_secret_enc", ID: "id"},
	{Table: "outbox", Column: "payload", ID: "id"},
	{Table: "push_subscriptions", Column: "sub_enc", ID: "id"},
	{Table: "break_glass", Column: "reason_enc", ID: "id"},
}

// SealedValue is one sealed value (Old) and, after re-sealing, New.
type SealedValue struct {
	ID       string
	Old, New []byte
}

// KeySwitch is the one transaction that makes a rotating epoch the active
// one: every keyed hash is hashed again under the new epoch's keys (they
// cannot be recomputed: the secrets they cover are not stored), the blind
// indexes with them, so lookups never see a mix.
type KeySwitch struct {
	Epoch int64 // the rotating epoch
	At    time.Time
	// Rehash returns the keyed hash of the new epoch over old; kind is
	// "index" (blind index of an address), "app-password" or "recovery"
	// (recovery codes and passcodes).
	Rehash func(kind string, old []byte) []byte
	// RecipientKey re-seals a registered key under the purpose naming its
	// new blind index.
	RecipientKey func(oldIdx, newIdx, sealed []byte) ([]byte, error)
	// SealEpoch returns the sealed subkeys of epoch e (e.Sealed is nil for
	// the epoch being retired), under the new key.
	SealEpoch func(e KeyEpoch) ([]byte, error)
	NewKeyID  string
	// Audit seals the entry that switches the audit trail's keys: it is
	// the last entry under the old keys; counts are what was re-keyed.
	Audit func(counts map[string]int) AuditFunc
}

// KeyStore is the store's part of key rotation (keys.go).
type KeyStore interface {
	KeyEpochs(ctx context.Context) ([]KeyEpoch, error)
	// BeginKeyEpoch records active (when the table is still empty) and
	// next, in state rotating, with audit's entries. A rotating epoch
	// with next's key id already there is kept (a resumed rotation);
	// another is ErrConflict.
	BeginKeyEpoch(ctx context.Context, active, next KeyEpoch, audit AuditFunc) error
	// SealedPage returns up to limit non-empty values of c with ID >
	// after, in ID order.
	SealedPage(ctx context.Context, c SealedColumn, after string, limit int) ([]SealedValue, error)
	// Reseal writes New for each value still holding Old (a value changed
	// meanwhile is left for the next pass) and counts them on the epoch,
	// in one transaction; it returns how many it wrote.
	Reseal(ctx context.Context, c SealedColumn, epoch int64, vals []SealedValue) (int, error)
	SwitchKeyEpoch(ctx context.Context, sw KeySwitch) (map[string]int, error)

	GatewayKeys(ctx context.Context) ([]GatewayKey, error)
	// RotateGatewayKey records old (if new to the table) as retired at
	// at and next as the key in use, with audit's entry.
	RotateGatewayKey(ctx context.Context, old, next GatewayKey, audit AuditFunc) error

	// MessageKeyPage pages through every message's key packets (id >
	// after, id order), purged ones (no ciphertext) skipped.
	MessageKeyPage(ctx context.Context, after string, limit int) ([]MessageKeys, error)
	// ReplaceMessageKeys writes each message's new key packets where they
	// are still old (compare-and-set: a claim or recovery meanwhile wins
	// and the message is taken again on the next pass), with the entries
	// audit(n) seals, in one transaction; it returns n, the messages
	// written.
	ReplaceMessageKeys(ctx context.Context, old, next []MessageKeys, audit func(n int) AuditFunc) (int, error)
	// CopyKeyPage and ReplaceCopyKeys are the same for the sender's and
	// reviewers' copies (message_copies), which are sealed to escrow too.
	CopyKeyPage(ctx context.Context, after CopyKeys, limit int) ([]CopyKeys, error)
	ReplaceCopyKeys(ctx context.Context, old, next []CopyKeys, audit func(n int) AuditFunc) (int, error)
}

// CopyKeys are the key packets of one message copy.
type CopyKeys struct {
	MessageID, Kind string
	KeyPackets      []byte
}

var _ KeyStore = (*SQL)(nil)

func (s *SQL) KeyEpochs(ctx context.Context) ([]KeyEpoch, error) {
	return keyEpochs(ctx, s.db)
}

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

func keyEpochs(ctx context.Context, q querier) ([]KeyEpoch, error) {
	rows, err := q.QueryContext(ctx, `SELECT epoch, key_id, state, audit_from_seq, sealed, sealed_by,
		created_at, rotated_at, resealed FROM key_epochs ORDER BY epoch`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []KeyEpoch
	for rows.Next() {
		var e KeyEpoch
		var c int64
		var r sql.NullInt64
		if err := rows.Scan(&e.Epoch, &e.KeyID, &e.State, &e.AuditFromSeq, &e.Sealed, &e.SealedBy, &c, &r, &e.Resealed); err != nil {
			return nil, err
		}
		e.CreatedAt, e.RotatedAt = fromUnix(c), fromNull(r)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *SQL) BeginKeyEpoch(ctx context.Context, active, next KeyEpoch, audit AuditFunc) error {
	return s.auditedTx(ctx, func(tx *sql.Tx) error {
		eps, err := keyEpochs(ctx, tx)
		if err != nil {
			return err
		}
		for _, e := range eps {
			if e.State == EpochRotating {
				if e.KeyID == next.KeyID {
					return nil
				}
				return fmt.Errorf("%w: a rotation to another key (%s) is under way", ErrConflict, e.KeyID)
			}
		}
		if len(eps) == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO key_epochs (epoch, key_id, state, audit_from_seq, created_at)
				VALUES ($1,$2,$3,$4,$5)`, active.Epoch, active.KeyID, EpochActive, active.AuditFromSeq, unix(active.CreatedAt)); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_epochs (epoch, key_id, state, created_at)
			VALUES ($1,$2,$3,$4)`, next.Epoch, next.KeyID, EpochRotating, unix(next.CreatedAt)); err != nil {
			if isUnique(err) {
				return fmt.Errorf("%w: epoch %d or key %s already recorded", ErrConflict, next.Epoch, next.KeyID)
			}
			return err
		}
		return s.appendAudit(ctx, tx, audit)
	})
}

// where selects the non-empty values: a sent notice's payload is emptied,
// and a page of empty values must not end the walk early.
func (c SealedColumn) where() string {
	w := c.Column + ` IS NOT NULL AND length(` + c.Column + `) > 0`
	if c.Where != "" {
		w += ` AND ` + c.Where
	}
	return w
}

func (c SealedColumn) known() bool {
	for _, k := range SealedColumns {
		if k == c {
			return true
		}
	}
	return false
}

func (s *SQL) SealedPage(ctx context.Context, c SealedColumn, after string, limit int) ([]SealedValue, error) {
	if !c.known() {
		return nil, fmt.Errorf("store: %s.%s is not a sealed column", c.Table, c.Column)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+c.ID+`, `+c.Column+` FROM `+c.Table+`
		WHERE `+c.ID+` > $1 AND `+c.where()+` ORDER BY `+c.ID+` LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []SealedValue
	for rows.Next() {
		var v SealedValue
		if err := rows.Scan(&v.ID, &v.Old); err != nil {
			return nil, err
		}
		if len(v.Old) > 0 {
			out = append(out, v)
		}
	}
	return out, rows.Err()
}

func (s *SQL) Reseal(ctx context.Context, c SealedColumn, epoch int64, vals []SealedValue) (int, error) {
	if !c.known() {
		return 0, fmt.Errorf("store: %s.%s is not a sealed column", c.Table, c.Column)
	}
	var n int
	err := s.tx(ctx, func(tx *sql.Tx) error {
		n = 0
		for _, v := range vals {
			if v.New == nil {
				continue
			}
			res, err := tx.ExecContext(ctx, `UPDATE `+c.Table+` SET `+c.Column+` = $1 WHERE `+c.ID+` = $2 AND `+c.Column+` = $3`,
				v.New, v.ID, v.Old)
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += int(k)
		}
		_, err := tx.ExecContext(ctx, `UPDATE key_epochs SET resealed = resealed + $1 WHERE epoch = $2 AND state = $3`,
			n, epoch, EpochRotating)
		return err
	})
	return n, err
}

// rekeyed is one row's keyed hash before and after.
type rekeyed struct {
	key      []any // the WHERE arguments after the new value
	old, new []byte
}

func (s *SQL) SwitchKeyEpoch(ctx context.Context, sw KeySwitch) (map[string]int, error) {
	var counts map[string]int
	err := s.auditedTx(ctx, func(tx *sql.Tx) error {
		counts = map[string]int{}
		eps, err := keyEpochs(ctx, tx)
		if err != nil {
			return err
		}
		var next *KeyEpoch
		for i := range eps {
			if eps[i].Epoch == sw.Epoch && eps[i].State == EpochRotating {
				next = &eps[i]
			}
		}
		if next == nil {
			return fmt.Errorf("%w: epoch %d is not rotating", ErrConflict, sw.Epoch)
		}
		// Keyed hashes: each is hashed again, exactly once (this
		// transaction commits or none of it does).
		for _, h := range []struct {
			name, kind, sel, upd string
		}{
			{"users", "index", `SELECT id, email_index FROM users`, `UPDATE users SET email_index = $1 WHERE id = $2`},
			{"app_passwords", "app-password", `SELECT id, mac FROM app_passwords`, `UPDATE app_passwords SET mac = $1 WHERE id = $2`},
			{"passcodes", "recovery", `SELECT id, passcode_hash FROM messages WHERE passcode_hash IS NOT NULL`,
				`UPDATE messages SET passcode_hash = $1 WHERE id = $2`},
		} {
			rows, err := scanRekey(ctx, tx, h.sel)
			if err != nil {
				return fmt.Errorf("store: %s: %w", h.name, err)
			}
			for _, r := range rows {
				if len(r.old) == 0 {
					continue
				}
				if _, err := tx.ExecContext(ctx, h.upd, append([]any{sw.Rehash(h.kind, r.old)}, r.key...)...); err != nil {
					return fmt.Errorf("store: %s: %w", h.name, err)
				}
			}
			counts[h.name] = len(rows)
		}
		// recovery_codes: the hash is part of the primary key.
		codes, err := tx.QueryContext(ctx, `SELECT user_id, code_hash FROM recovery_codes`)
		if err != nil {
			return err
		}
		var rc []rekeyed
		for codes.Next() {
			var uid string
			var h []byte
			if err := codes.Scan(&uid, &h); err != nil {
				codes.Close()
				return err
			}
			rc = append(rc, rekeyed{key: []any{uid}, old: h})
		}
		codes.Close()
		if err := codes.Err(); err != nil {
			return err
		}
		for _, r := range rc {
			if _, err := tx.ExecContext(ctx, `UPDATE recovery_codes SET code_hash = $1 WHERE user_id = $2 AND code_hash = $3`,
				sw.Rehash("recovery", r.old), r.key[0], r.old); err != nil {
				return err
			}
		}
		counts["recovery_codes"] = len(rc)
		// recipient_keys: keyed by the blind index, sealed under a
		// purpose naming it.
		rk, err := tx.QueryContext(ctx, `SELECT email_index, public_key_enc FROM recipient_keys`)
		if err != nil {
			return err
		}
		var keys [][2][]byte
		for rk.Next() {
			var idx, enc []byte
			if err := rk.Scan(&idx, &enc); err != nil {
				rk.Close()
				return err
			}
			keys = append(keys, [2][]byte{idx, enc})
		}
		rk.Close()
		if err := rk.Err(); err != nil {
			return err
		}
		for _, k := range keys {
			ni := sw.Rehash("index", k[0])
			enc, err := sw.RecipientKey(k[0], ni, k[1])
			if err != nil {
				return fmt.Errorf("store: recipient key: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE recipient_keys SET email_index = $1, public_key_enc = $2 WHERE email_index = $3`,
				ni, enc, k[0]); err != nil {
				return err
			}
		}
		counts["recipient_keys"] = len(keys)
		// The retiring epoch's subkeys, and every earlier one's, sealed
		// under the new key.
		for _, e := range eps {
			if e.Epoch == sw.Epoch {
				continue
			}
			sealed, err := sw.SealEpoch(e)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE key_epochs SET sealed = $1, sealed_by = $2, state = $3,
				rotated_at = CASE WHEN state = $4 THEN $5 ELSE rotated_at END WHERE epoch = $6`,
				sealed, sw.NewKeyID, EpochRetired, EpochActive, unix(sw.At), e.Epoch); err != nil {
				return err
			}
		}
		counts["resealed"] = int(next.Resealed)
		if err := s.appendAudit(ctx, tx, sw.Audit(counts)); err != nil {
			return err
		}
		seq, _, err := auditHead(ctx, tx, s.headLock)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE key_epochs SET state = $1, audit_from_seq = $2, rotated_at = $3 WHERE epoch = $4`,
			EpochActive, seq+1, unix(sw.At), sw.Epoch)
		return err
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

func scanRekey(ctx context.Context, tx *sql.Tx, query string) ([]rekeyed, error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rekeyed
	for rows.Next() {
		var id string
		var h []byte
		if err := rows.Scan(&id, &h); err != nil {
			return nil, err
		}
		out = append(out, rekeyed{key: []any{id}, old: h})
	}
	return out, rows.Err()
}

func (s *SQL) GatewayKeys(ctx context.Context) ([]GatewayKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT fingerprint, public_key, created_at, retired_at FROM gateway_keys ORDER BY created_at, fingerprint`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []GatewayKey
	for rows.Next() {
		var k GatewayKey
		var c int64
		var r sql.NullInt64
		if err := rows.Scan(&k.Fingerprint, &k.PublicKey, &c, &r); err != nil {
			return nil, err
		}
		k.CreatedAt, k.RetiredAt = fromUnix(c), fromNull(r)
		out = append(out, k)
	}
	return out, rows.Err()
}

func (s *SQL) RotateGatewayKey(ctx context.Context, old, next GatewayKey, audit AuditFunc) error {
	if old.RetiredAt == nil {
		return errors.New("store: the old gateway key needs its retirement time")
	}
	return s.auditedTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE gateway_keys SET retired_at = $1 WHERE fingerprint = $2 AND retired_at IS NULL`,
			unix(*old.RetiredAt), old.Fingerprint); err != nil {
			return err
		}
		for _, k := range []GatewayKey{old, next} {
			var retired any
			if k.RetiredAt != nil {
				retired = unix(*k.RetiredAt)
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM gateway_keys WHERE fingerprint = $1`, k.Fingerprint).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO gateway_keys (fingerprint, public_key, created_at, retired_at)
				VALUES ($1,$2,$3,$4)`, k.Fingerprint, k.PublicKey, unix(k.CreatedAt), retired); err != nil {
				return err
			}
		}
		return s.appendAudit(ctx, tx, audit)
	})
}

func (s *SQL) MessageKeyPage(ctx context.Context, after string, limit int) ([]MessageKeys, error) {
	return s.queryKeys(ctx, `SELECT id, key_packets, summary_keys FROM messages
		WHERE id > $1 AND purged_at IS NULL ORDER BY id LIMIT $2`, after, limit)
}

func (s *SQL) ReplaceMessageKeys(ctx context.Context, old, next []MessageKeys, audit func(n int) AuditFunc) (int, error) {
	return s.replaceKeys(ctx, len(old), len(next), audit, func(tx *sql.Tx, i int) (sql.Result, error) {
		o, nk := old[i], next[i]
		if nk.MessageID != o.MessageID {
			return nil, errors.New("store: old and new key packets are not in the same order")
		}
		return tx.ExecContext(ctx, `UPDATE messages SET key_packets = $1, summary_keys = $2
			WHERE id = $3 AND key_packets = $4 AND summary_keys = $5 AND purged_at IS NULL`,
			nk.KeyPackets, nk.SummaryKeys, o.MessageID, o.KeyPackets, o.SummaryKeys)
	})
}

// replaceKeys runs one batch of key-packet replacements in one transaction
// with its audit entry: each row changes only if it still holds the old
// packets (compare-and-set), and the entry counts the rows that did.
func (s *SQL) replaceKeys(ctx context.Context, nOld, nNext int, audit func(n int) AuditFunc,
	update func(tx *sql.Tx, i int) (sql.Result, error)) (int, error) {
	if nOld != nNext {
		return 0, errors.New("store: old and new key packets differ in number")
	}
	var n int
	err := s.auditedTx(ctx, func(tx *sql.Tx) error {
		n = 0
		for i := range nOld {
			res, err := update(tx, i)
			if err != nil {
				return err
			}
			k, _ := res.RowsAffected()
			n += int(k)
		}
		if n == 0 {
			return nil
		}
		return s.appendAudit(ctx, tx, audit(n))
	})
	return n, err
}

func (s *SQL) CopyKeyPage(ctx context.Context, after CopyKeys, limit int) ([]CopyKeys, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT message_id, kind, key_packets FROM message_copies
		WHERE message_id > $1 OR (message_id = $1 AND kind > $2) ORDER BY message_id, kind LIMIT $3`, after.MessageID, after.Kind, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []CopyKeys
	for rows.Next() {
		var c CopyKeys
		if err := rows.Scan(&c.MessageID, &c.Kind, &c.KeyPackets); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *SQL) ReplaceCopyKeys(ctx context.Context, old, next []CopyKeys, audit func(n int) AuditFunc) (int, error) {
	return s.replaceKeys(ctx, len(old), len(next), audit, func(tx *sql.Tx, i int) (sql.Result, error) {
		o, nk := old[i], next[i]
		if nk.MessageID != o.MessageID || nk.Kind != o.Kind {
			return nil, errors.New("store: old and new key packets are not in the same order")
		}
		return tx.ExecContext(ctx, `UPDATE message_copies SET key_packets = $1
			WHERE message_id = $2 AND kind = $3 AND key_packets = $4`, nk.KeyPackets, o.MessageID, o.Kind, o.KeyPackets)
	})
}
