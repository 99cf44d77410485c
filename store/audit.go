package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AuditRecord is one row of the audit trail as package audit chains and
// seals it: the store keeps it and never interprets DetailsEnc or MAC.
type AuditRecord struct {
	Seq        int64
	At         time.Time
	Actor      string
	IP         string
	Action     string
	ObjectType string
	ObjectID   string
	Outcome    string
	CID        string
	DetailsEnc []byte // AES-256-GCM ciphertext of the details; empty when there are none
	MAC        []byte // chains this row to the one before it
}

// AuditFilter selects audit rows. Empty strings and zero times/sequence
// numbers leave a field unconstrained.
type AuditFilter struct {
	Actor        string
	IP           string
	Action       string // exact match
	ActionPrefix string // action starts with this ("auth.")
	ObjectType   string
	ObjectID     string
	CID          string
	Outcome      string
	From, To     time.Time // From <= at < To
	AfterSeq     int64     // seq > AfterSeq
	BeforeSeq    int64     // seq < BeforeSeq
	Desc         bool      // newest (highest seq) first; otherwise ascending seq
	Limit        int       // at most this many rows; must be > 0
}

// AuditFunc seals the audit entries of one change: called inside the
// change's own write transaction with the chain head read there (0 and nil
// for an empty trail), it returns the records numbered headSeq+1,
// headSeq+2, ... The store inserts them in that transaction, so the change
// and its entries commit together or not at all (issue 9.2). It may be
// called more than once (a retry after a conflict): it must not remember
// anything but its last result.
type AuditFunc func(headSeq int64, headMAC []byte) ([]AuditRecord, error)

// PurgeAudit returns the AuditFunc for the messages a purge is about to
// empty (their ids, in the purge's transaction).
type PurgeAudit func(ids []string) AuditFunc

// AuditStore is the append-only audit trail. There is deliberately no way
// to update or delete a row: entries are kept at least six years (HIPAA
// 164.316(b)(2)) and nothing in phigate removes them.
type AuditStore interface {
	// AppendAudit runs one write transaction: it reads the chain head
	// (0 and nil for an empty trail), calls build with it, and inserts the
	// records build returns, which must be numbered headSeq+1, headSeq+2,
	// ... in order. If another writer (another node) took one of those
	// numbers first the result is ErrConflict and nothing is written: call
	// again, and build runs again on the new head.
	AppendAudit(ctx context.Context, build AuditFunc) error
	// AuditHead returns the highest sequence number and its MAC (0, nil for
	// an empty trail).
	AuditHead(ctx context.Context) (int64, []byte, error)
	// ListAudit returns rows matching f, ordered by seq (see f.Desc).
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
}

var _ AuditStore = (*SQL)(nil)

// headQuery reads the chain head. SQLite write transactions hold the
// database's write lock from BEGIN (_txlock=immediate), so the head cannot
// move before commit; PostgreSQL takes SQL.auditLock (an advisory lock held
// to commit) before reading it. A unique(seq) conflict that still happens
// (another writer without the lock) is reported by appendAudit as
// errAuditConflict for the caller to retry.
const headQuery = `SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1`

type queryRower interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

func auditHead(ctx context.Context, q queryRower, lock string) (int64, []byte, error) {
	var seq int64
	var mac []byte
	err := q.QueryRowContext(ctx, headQuery+lock).Scan(&seq, &mac)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	return seq, mac, err
}

func (s *SQL) AuditHead(ctx context.Context) (int64, []byte, error) {
	return auditHead(ctx, s.db, "")
}

// errAuditConflict: another writer took the next sequence number between
// our head read and insert; the whole transaction must run again.
var errAuditConflict = fmt.Errorf("%w: audit sequence number taken", ErrConflict)

// maxAuditRetries bounds the re-runs of a transaction whose audit entries
// lost the race for their sequence numbers.
const maxAuditRetries = 50

func (s *SQL) AppendAudit(ctx context.Context, build AuditFunc) error {
	err := s.tx(ctx, func(tx *sql.Tx) error { return s.appendAudit(ctx, tx, build) })
	if errors.Is(err, errAuditConflict) || isUnique(err) {
		return ErrConflict
	}
	return err
}

// appendAudit reads the head inside tx, calls build on it and inserts what
// it returns. A nil build appends nothing.
func (s *SQL) appendAudit(ctx context.Context, tx *sql.Tx, build AuditFunc) error {
	if build == nil {
		return nil
	}
	if s.auditLock != "" {
		if _, err := tx.ExecContext(ctx, s.auditLock); err != nil {
			return err
		}
	}
	seq, mac, err := auditHead(ctx, tx, s.headLock)
	if err != nil {
		return err
	}
	recs, err := build(seq, mac)
	if err != nil {
		return err
	}
	for i, r := range recs {
		if want := seq + int64(i) + 1; r.Seq != want {
			return fmt.Errorf("store: audit record numbered %d, want %d", r.Seq, want)
		}
		if len(r.MAC) == 0 {
			return fmt.Errorf("store: audit record %d has no MAC", r.Seq)
		}
		enc := r.DetailsEnc
		if enc == nil {
			enc = []byte{}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (seq, at, actor, ip, action,
			object_type, object_id, outcome, cid, details_enc, mac)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
			r.Seq, unix(r.At), r.Actor, r.IP, r.Action, r.ObjectType, r.ObjectID, r.Outcome,
			r.CID, enc, r.MAC)
		if isUnique(err) || (err != nil && strings.Contains(err.Error(), "append-only")) {
			return errAuditConflict
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// auditedTx runs fn in a write transaction and re-runs the whole
// transaction when its audit entries lost their sequence numbers to another
// writer (only possible with several processes on a server database).
func (s *SQL) auditedTx(ctx context.Context, fn func(*sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := s.tx(ctx, fn)
		if !errors.Is(err, errAuditConflict) || attempt >= maxAuditRetries {
			return err
		}
	}
}

func (s *SQL) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	if f.Limit <= 0 {
		return nil, errors.New("store: ListAudit needs a limit")
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	for _, c := range []struct{ col, v string }{
		{"actor", f.Actor}, {"ip", f.IP}, {"action", f.Action}, {"object_type", f.ObjectType},
		{"object_id", f.ObjectID}, {"cid", f.CID}, {"outcome", f.Outcome},
	} {
		if c.v != "" {
			add(c.col+" = ?", c.v)
		}
	}
	if f.ActionPrefix != "" {
		// substr counts characters on both SQLite and PostgreSQL; LIKE
		// would treat "_" as a wildcard and differs in case handling.
		args = append(args, utf8.RuneCountInString(f.ActionPrefix), f.ActionPrefix)
		where = append(where, fmt.Sprintf("substr(action, 1, $%d) = $%d", len(args)-1, len(args)))
	}
	if !f.From.IsZero() {
		add("at >= ?", unix(f.From))
	}
	if !f.To.IsZero() {
		add("at < ?", unix(f.To))
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	if f.BeforeSeq > 0 {
		add("seq < ?", f.BeforeSeq)
	}
	q := `SELECT seq, at, actor, ip, action, object_type, object_id, outcome, cid, details_enc, mac FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Desc {
		q += " ORDER BY seq DESC"
	} else {
		q += " ORDER BY seq"
	}
	args = append(args, f.Limit)
	q += " LIMIT $" + strconv.Itoa(len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at int64
		if err := rows.Scan(&r.Seq, &at, &r.Actor, &r.IP, &r.Action, &r.ObjectType, &r.ObjectID,
			&r.Outcome, &r.CID, &r.DetailsEnc, &r.MAC); err != nil {
			return nil, err
		}
		r.At = fromUnix(at)
		out = append(out, r)
	}
	return out, rows.Err()
}
