package store

// Issue 10.4: notification preferences and the batching of notices.

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// PrefsStore keeps how each account wants to hear of new messages.
type PrefsStore interface {
	// NotifyChannels returns the account's choice ("email", "push",
	// "both"); "" when it never chose (the organisation's default applies).
	NotifyChannels(ctx context.Context, userID string) (string, error)
	// SetNotifyChannels records the account's choice ("" forgets it);
	// audit is committed with it (nil: none).
	SetNotifyChannels(ctx context.Context, userID, channels string, at time.Time, audit AuditFunc) error
}

func (s *SQL) NotifyChannels(ctx context.Context, userID string) (string, error) {
	var c string
	err := s.db.QueryRowContext(ctx, `SELECT channels FROM notify_prefs WHERE user_id = $1`, userID).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return c, err
}

func (s *SQL) SetNotifyChannels(ctx context.Context, userID, channels string, at time.Time, audit AuditFunc) error {
	return s.auditedTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM notify_prefs WHERE user_id = $1`, userID); err != nil {
			return err
		}
		if channels != "" {
			if _, err := tx.ExecContext(ctx, `INSERT INTO notify_prefs (user_id, channels, updated_at) VALUES ($1,$2,$3)`,
				userID, channels, unix(at)); err != nil {
				return err
			}
		}
		return s.appendAudit(ctx, tx, audit)
	})
}

// insertBatched writes a notice that may cover several messages
// (o.Batch set, o.Window > 0), in the transaction of the message it
// announces. The first notice of a window is due at once and opens the
// window; a later message is covered by an unsent notice of the batch that
// goes out no later than the window's end (the first, still unsent, or a
// follow-up), otherwise it gets one follow-up due at the window's end,
// which opens the next window. So a burst gets the first notice at once
// and at most one more per window, and a notice is never dropped: a row
// that failed for good (due in 2200) covers nothing.
func insertBatched(ctx context.Context, tx *sql.Tx, o OutboxItem) error {
	now := o.CreatedAt
	// Create, then lock the window's row: a concurrent delivery to the
	// same recipient (PostgreSQL) waits here and then sees this one's rows.
	if _, err := tx.ExecContext(ctx, `INSERT INTO notice_windows (batch_key, window_end) VALUES ($1, 0)
		ON CONFLICT (batch_key) DO NOTHING`, o.Batch); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE notice_windows SET window_end = window_end WHERE batch_key = $1`, o.Batch); err != nil {
		return err
	}
	var endN int64
	if err := tx.QueryRowContext(ctx, `SELECT window_end FROM notice_windows WHERE batch_key = $1`, o.Batch).Scan(&endN); err != nil {
		return err
	}
	end := fromUnix(endN)
	open := end.After(now)
	horizon := now
	if open {
		horizon = end
	}
	var covering int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE batch_key = $1 AND sent_at IS NULL
		AND next_attempt_at <= $2`, o.Batch, unix(horizon)).Scan(&covering); err != nil {
		return err
	}
	if covering > 0 {
		return nil
	}
	next := now.Add(o.Window)
	if open {
		o.NextAttemptAt, next = end, end.Add(o.Window)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE notice_windows SET window_end = $2 WHERE batch_key = $1`, o.Batch, unix(next)); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox (id, kind, user_id, message_id, payload,
		created_at, next_attempt_at, batch_key, reference) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
		o.ID, o.Kind, nullStr(o.UserID), nullStr(o.MessageID), o.Payload, unix(o.CreatedAt), unix(o.NextAttemptAt), o.Batch, o.Reference)
	return err
}
