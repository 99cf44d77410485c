package store

import (
	"context"
	"database/sql"
	"time"
)

// FailedOutbox lists unsent outbox rows whose last attempt failed (those
// still retrying and those given up on), the most recent first, payloads
// included (sealed). Issue 10.6: the admin page of failed notices.
func (s *SQL) FailedOutbox(ctx context.Context, limit int) ([]OutboxItem, error) {
	return queryOutbox(ctx, s.db, `WHERE sent_at IS NULL AND attempts > 0 AND last_error <> ''
		ORDER BY created_at DESC, id LIMIT $1`, limit)
}

// RequeueOutbox makes an unsent row due at now with its attempts counted
// from zero again (an admin's retry); ErrNotFound if it is sent or gone.
// The last error stays until the next attempt replaces or clears it.
func (s *SQL) RequeueOutbox(ctx context.Context, id string, now time.Time) error {
	res, err := s.exec(ctx, `UPDATE outbox SET attempts = 0, next_attempt_at = $1 WHERE id = $2 AND sent_at IS NULL`, unix(now), id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err == nil {
			err = ErrNotFound
		}
		return err
	}
	return nil
}

// LastOutboxFor is when the latest outbox row of the kind was made for
// the message (zero if none): a sender's re-sends of a notice are spaced
// from it (issue 10.6).
func (s *SQL) LastOutboxFor(ctx context.Context, messageID, kind string) (time.Time, error) {
	var last sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MAX(created_at) FROM outbox WHERE message_id = $1 AND kind = $2`,
		messageID, kind).Scan(&last)
	if err != nil || !last.Valid {
		return time.Time{}, err
	}
	return fromUnix(last.Int64), nil
}
