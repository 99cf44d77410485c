package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Issue 13.1 and 13.9: a new claim link asked for from an expired or used
// one, what a pending account still has to read, and the references of the
// notices an account was sent.

// ErrTooSoon: a new claim link went to this account too recently.
var ErrTooSoon = errors.New("store: a new link was sent too recently")

// ClaimRenewal is one "send me a new link": the new token, its notice and
// the entry that records it, committed together.
type ClaimRenewal struct {
	UserID string
	Token  ClaimToken
	Notice OutboxItem
	// NoticeKind is the outbox kind of renewal notices; a row of that kind
	// for the account created after Since makes the renewal ErrTooSoon.
	NoticeKind string
	Since      time.Time
	At         time.Time
	Audit      AuditFunc
}

// NoticeRef is a notice an account was sent, by its reference.
type NoticeRef struct {
	UserID    string
	Reference string
	Kind      string
	MessageID string
	CreatedAt time.Time
	SentAt    *time.Time
}

// ClaimLinkStore is the store side of issue 13.1 and 13.9.
type ClaimLinkStore interface {
	// ClaimStanding counts a user's messages that can still be read
	// (delivered, unexpired at now, not purged) and those withdrawn
	// (recalled or denied).
	ClaimStanding(ctx context.Context, userID string, now time.Time) (readable, withdrawn int, err error)
	// RenewClaim ends every unused claim token of a pending account and
	// adds r.Token, r.Notice and r.Audit's entries in one transaction.
	// ErrNotFound: the account is not pending (any more); ErrTooSoon: a
	// notice of r.NoticeKind was made for it after r.Since. The account's
	// row is locked first, so renewals of one account run one after the
	// other on every backend and at most one passes the ErrTooSoon check.
	RenewClaim(ctx context.Context, r ClaimRenewal) error
	// NoticeReferences returns the newest notices with a reference made
	// for userID (messageID: only that message's; "" any), newest first,
	// at most limit.
	NoticeReferences(ctx context.Context, userID, messageID string, limit int) ([]NoticeRef, error)
	// NoticesByReference returns the notices made with reference ref
	// (newest first, at most limit): the staff's check of a reference a
	// patient reads out on the phone.
	NoticesByReference(ctx context.Context, ref string, limit int) ([]NoticeRef, error)
}

func (s *SQL) ClaimStanding(ctx context.Context, userID string, now time.Time) (int, int, error) {
	var readable, withdrawn int
	err := s.db.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN state = $2 AND purged_at IS NULL AND expires_at > $3 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state IN ($4, $5) THEN 1 ELSE 0 END), 0)
		FROM messages WHERE recipient_id = $1 AND reply_to = ''`,
		userID, StateDelivered, unix(now), StateRecalled, StateDenied).Scan(&readable, &withdrawn)
	return readable, withdrawn, err
}

func (s *SQL) RenewClaim(ctx context.Context, r ClaimRenewal) error {
	return s.auditedTx(ctx, func(tx *sql.Tx) error {
		// The write lock on the account's row: a concurrent renewal (or a
		// claim) waits here, and then sees what this one committed.
		res, err := tx.ExecContext(ctx, `UPDATE users SET updated_at = updated_at WHERE id = $1 AND status = $2`,
			r.UserID, StatusPending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		var recent int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE user_id = $1 AND kind = $2 AND created_at > $3`,
			r.UserID, r.NoticeKind, unix(r.Since)).Scan(&recent); err != nil {
			return err
		}
		if recent > 0 {
			return ErrTooSoon
		}
		// Only the newest link works: the old ones stay dead.
		if _, err := tx.ExecContext(ctx, `UPDATE claim_tokens SET used_at = $1 WHERE user_id = $2 AND kind = $3 AND used_at IS NULL`,
			unix(r.At), r.UserID, TokenClaim); err != nil {
			return err
		}
		r.Token.Kind = TokenClaim
		if err := insertNotices(ctx, tx, Delivery{ClaimTokens: []ClaimToken{r.Token}, Outbox: []OutboxItem{r.Notice}}); err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, r.Audit)
	})
}

func (s *SQL) NoticeReferences(ctx context.Context, userID, messageID string, limit int) ([]NoticeRef, error) {
	return s.queryNoticeRefs(ctx, `WHERE user_id = $1 AND reference <> '' AND ($2 = '' OR message_id = $2)
		ORDER BY created_at DESC, id LIMIT $3`, userID, messageID, limit)
}

func (s *SQL) NoticesByReference(ctx context.Context, ref string, limit int) ([]NoticeRef, error) {
	if ref == "" {
		return nil, nil
	}
	return s.queryNoticeRefs(ctx, `WHERE reference = $1 ORDER BY created_at DESC, id LIMIT $2`, ref, limit)
}

func (s *SQL) queryNoticeRefs(ctx context.Context, where string, args ...any) ([]NoticeRef, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT COALESCE(user_id, ''), reference, kind, COALESCE(message_id, ''),
		created_at, sent_at FROM outbox `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []NoticeRef
	for rows.Next() {
		var n NoticeRef
		var c int64
		var sent sql.NullInt64
		if err := rows.Scan(&n.UserID, &n.Reference, &n.Kind, &n.MessageID, &c, &sent); err != nil {
			return nil, err
		}
		n.CreatedAt, n.SentAt = fromUnix(c), fromNull(sent)
		out = append(out, n)
	}
	return out, rows.Err()
}
