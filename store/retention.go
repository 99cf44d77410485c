package store

import (
	"context"
	"database/sql"
	"time"
)

// PurgePlan says what one purge run disposes of (issue 14.4). Zero
// durations keep that kind of material.
type PurgePlan struct {
	Now time.Time
	// UnclaimedFor: a pending account whose creation and newest message
	// are older than this, and whose messages are all disposed of, is
	// deleted with its pending key.
	UnclaimedFor time.Duration
	// PushStaleFor: a push subscription without an accepted push (or, if
	// never used, its creation) for this long is deleted, as are those of
	// disabled accounts.
	PushStaleFor time.Duration
	// Batch bounds the rows of each kind one run touches (invariant 7).
	Batch int
}

// PurgeResult is what one run disposed of.
type PurgeResult struct {
	// Messages whose ciphertext (body with attachments, summary, key
	// packets) was emptied, by why.
	Expired, Recalled, Denied []string
	// Copies: their summaries sealed to others (sender, reviewers) deleted.
	Copies int
	// Accounts deleted unclaimed, and how many of them held a pending key.
	Accounts    []string
	PendingKeys int
	// Tokens: spent or expired claim and reset links deleted.
	Tokens int
	// PushSubscriptions deleted as stale.
	PushSubscriptions int
	// More is true when a kind hit the batch bound: run again.
	More bool
}

// Messages is how many messages lost their ciphertext.
func (r PurgeResult) Messages() int { return len(r.Expired) + len(r.Recalled) + len(r.Denied) }

// Empty is true when the run disposed of nothing.
func (r PurgeResult) Empty() bool {
	return r.Messages() == 0 && len(r.Accounts) == 0 && r.Tokens == 0 && r.PushSubscriptions == 0
}

// RetentionAudit returns the entries recording r, sealed in the purge's
// transaction; it is called only when r is not empty.
type RetentionAudit func(r PurgeResult) AuditFunc

// RetentionStore disposes of what is past its retention.
type RetentionStore interface {
	// Purge runs one bounded purge in one transaction, with the entries
	// audit makes for it: all of it commits, or none.
	Purge(ctx context.Context, p PurgePlan, audit RetentionAudit) (PurgeResult, error)
	// RetentionBacklog counts messages whose disposal deadline passed
	// before due and that still hold their ciphertext, and the oldest
	// such deadline (for the compliance report).
	RetentionBacklog(ctx context.Context, due time.Time) (int, time.Time, error)
}

var _ RetentionStore = (*SQL)(nil)

func (s *SQL) Purge(ctx context.Context, p PurgePlan, audit RetentionAudit) (PurgeResult, error) {
	if p.Batch < 1 {
		p.Batch = 500
	}
	var r PurgeResult
	err := s.auditedTx(ctx, func(tx *sql.Tx) error {
		r = PurgeResult{}
		if err := purgeMessages(ctx, tx, p, &r); err != nil {
			return err
		}
		if p.UnclaimedFor > 0 {
			if err := purgeUnclaimed(ctx, tx, p, &r); err != nil {
				return err
			}
		}
		// A spent or expired claim link of an account that still waits for
		// its password and has something to read stays: its page offers a
		// new link (issue 13.1, claimlink.go), found by this row. CASE
		// fixes the order: only a spent or expired claim link looks at its
		// own account's messages. (An IN list of every pending account
		// with mail read all delivered messages, 0.5 s under the write
		// lock at 100,000 of them, at every purge.) No ORDER BY: walking
		// the token_hash index visits the rows in random order, 0.3 s at
		// 100,000 links against 10 ms for the table scan.
		res, err := tx.ExecContext(ctx, `DELETE FROM claim_tokens WHERE token_hash IN (SELECT token_hash FROM claim_tokens t
			WHERE CASE WHEN t.used_at IS NULL AND t.expires_at > $1 THEN FALSE
				WHEN t.kind <> $3 THEN TRUE
				ELSE NOT EXISTS (SELECT 1 FROM users u JOIN messages m ON m.recipient_id = u.id
					WHERE u.id = t.user_id AND u.status = $4 AND m.state = $5 AND m.purged_at IS NULL AND m.expires_at > $1) END
			LIMIT $2)`, unix(p.Now), p.Batch, TokenClaim, StatusPending, StateDelivered)
		if err != nil {
			return err
		}
		r.Tokens = affected(res)
		if p.PushStaleFor > 0 {
			res, err := tx.ExecContext(ctx, `DELETE FROM push_subscriptions WHERE id IN (SELECT id FROM push_subscriptions
				WHERE COALESCE(last_success_at, created_at) <= $1 OR user_id IN (SELECT id FROM users WHERE status = $2)
				ORDER BY id LIMIT $3)`, unix(p.Now.Add(-p.PushStaleFor)), StatusDisabled, p.Batch)
			if err != nil {
				return err
			}
			r.PushSubscriptions = affected(res)
		}
		r.More = r.Tokens == p.Batch || r.PushSubscriptions == p.Batch || len(r.Accounts) == p.Batch ||
			len(r.Expired) == p.Batch || len(r.Recalled)+len(r.Denied) == p.Batch
		if r.Empty() || audit == nil {
			return nil
		}
		return s.appendAudit(ctx, tx, audit(r))
	})
	if err != nil {
		return PurgeResult{}, err
	}
	if !r.Empty() {
		// secure_delete zeroes the freed pages; the WAL still holds the
		// old ones until a checkpoint (as after claim and reset).
		s.flushDeleted(ctx)
	}
	return r, nil
}

// purgeMessages empties the ciphertext of recalled and denied messages and
// of those past their disposal deadline, up to p.Batch of each group.
func purgeMessages(ctx context.Context, tx *sql.Tx, p PurgePlan, r *PurgeResult) error {
	type row struct{ id, state string }
	pick := func(query string, args ...any) ([]row, error) {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var x row
			if err := rows.Scan(&x.id, &x.state); err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, rows.Err()
	}
	withdrawn, err := pick(`SELECT id, state FROM messages WHERE purged_at IS NULL AND state IN ($1, $2) ORDER BY id LIMIT $3`,
		StateRecalled, StateDenied, p.Batch)
	if err != nil {
		return err
	}
	due, err := pick(`SELECT id, state FROM messages WHERE purged_at IS NULL AND dispose_at <= $1 AND state NOT IN ($2, $3)
		ORDER BY dispose_at, id LIMIT $4`, unix(p.Now), StateRecalled, StateDenied, p.Batch)
	if err != nil {
		return err
	}
	for _, m := range append(withdrawn, due...) {
		// The condition again: under PostgreSQL's read committed another
		// node's purge may have taken the row since the select.
		res, err := tx.ExecContext(ctx, `UPDATE messages SET body = $1, summary = $1, key_packets = $1,
			summary_keys = $1, purged_at = $2 WHERE id = $3 AND purged_at IS NULL`, []byte{}, unix(p.Now), m.id)
		if err != nil {
			return err
		}
		if affected(res) == 0 {
			continue
		}
		// The sender's and reviewers' sealed summaries go with it.
		res, err = tx.ExecContext(ctx, `DELETE FROM message_copies WHERE message_id = $1`, m.id)
		if err != nil {
			return err
		}
		r.Copies += affected(res)
		switch m.state {
		case StateRecalled:
			r.Recalled = append(r.Recalled, m.id)
		case StateDenied:
			r.Denied = append(r.Denied, m.id)
		default:
			r.Expired = append(r.Expired, m.id)
		}
	}
	return nil
}

// purgeUnclaimed deletes pending accounts nobody claimed within
// p.UnclaimedFor of their newest message, once every message of theirs is
// disposed of: the account row (sealed address, blind index), its pending
// private key, its links and notices, and the emptied message rows.
func purgeUnclaimed(ctx context.Context, tx *sql.Tx, p PurgePlan, r *PurgeResult) error {
	cut := unix(p.Now.Add(-p.UnclaimedFor))
	rows, err := tx.QueryContext(ctx, `SELECT id, key_wrap FROM users u WHERE status = $1 AND created_at <= $2
		AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.recipient_id = u.id AND (m.created_at > $2 OR m.purged_at IS NULL))
		AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.sender_id = u.id)
		ORDER BY created_at, id LIMIT $3`, StatusPending, cut, p.Batch)
	if err != nil {
		return err
	}
	type acct struct{ id, wrap string }
	var due []acct
	for rows.Next() {
		var a acct
		if err := rows.Scan(&a.id, &a.wrap); err != nil {
			rows.Close()
			return err
		}
		due = append(due, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, a := range due {
		// Take the row first, still pending: a claim that committed since
		// the select leaves it alone. (On PostgreSQL a delivery to the
		// account committing meanwhile fails the delete on its foreign
		// key, and with it this run; the next run tries again.)
		res, err := tx.ExecContext(ctx, `UPDATE users SET updated_at = updated_at WHERE id = $1 AND status = $2`, a.id, StatusPending)
		if err != nil {
			return err
		}
		if affected(res) == 0 {
			continue
		}
		for _, q := range []string{
			`DELETE FROM claim_tokens WHERE user_id = $1`,
			`DELETE FROM outbox WHERE user_id = $1`,
			`DELETE FROM push_subscriptions WHERE user_id = $1`,
			`DELETE FROM notify_prefs WHERE user_id = $1`,
			`DELETE FROM recovery_codes WHERE user_id = $1`,
			`DELETE FROM app_passwords WHERE user_id = $1`,
			`DELETE FROM messages WHERE recipient_id = $1 AND purged_at IS NOT NULL`,
			`DELETE FROM users WHERE id = $1`,
		} {
			if _, err := tx.ExecContext(ctx, q, a.id); err != nil {
				return err
			}
		}
		r.Accounts = append(r.Accounts, a.id)
		if a.wrap == KeyWrapMaster {
			r.PendingKeys++
		}
	}
	return nil
}

func (s *SQL) RetentionBacklog(ctx context.Context, due time.Time) (int, time.Time, error) {
	var n int
	var oldest sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(dispose_at) FROM messages WHERE purged_at IS NULL AND dispose_at <= $1`,
		unix(due)).Scan(&n, &oldest)
	if err != nil || !oldest.Valid {
		return n, time.Time{}, err
	}
	return n, fromUnix(oldest.Int64), nil
}

// disposeAt is m's disposal deadline: its read window's end unless the
// policy gave it one.
func disposeAt(m Message) time.Time {
	if m.DisposeAt.IsZero() {
		return m.ExpiresAt
	}
	return m.DisposeAt
}

func affected(res sql.Result) int {
	n, _ := res.RowsAffected()
	return int(n)
}
