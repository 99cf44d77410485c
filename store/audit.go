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
	AppendAudit(ctx context.Context, build func(headSeq int64, headMAC []byte) ([]AuditRecord, error)) error
	// AuditHead returns the highest sequence number and its MAC (0, nil for
	// an empty trail).
	AuditHead(ctx context.Context) (int64, []byte, error)
	// ListAudit returns rows matching f, ordered by seq (see f.Desc).
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
}

var _ AuditStore = (*SQL)(nil)

func auditHead(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, []byte, error) {
	var seq int64
	var mac []byte
	err := q.QueryRowContext(ctx, `SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &mac)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	return seq, mac, err
}

func (s *SQL) AuditHead(ctx context.Context) (int64, []byte, error) {
	return auditHead(ctx, s.db)
}

func (s *SQL) AppendAudit(ctx context.Context, build func(headSeq int64, headMAC []byte) ([]AuditRecord, error)) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		seq, mac, err := auditHead(ctx, tx)
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
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit_log (seq, at, actor, ip, action,
				object_type, object_id, outcome, cid, details_enc, mac)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
				r.Seq, unix(r.At), r.Actor, r.IP, r.Action, r.ObjectType, r.ObjectID, r.Outcome,
				r.CID, enc, r.MAC); err != nil {
				return err
			}
		}
		return nil
	})
	if isUnique(err) {
		return ErrConflict
	}
	return err
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
