package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// ErrLimit means an account already has as many of a thing as it may.
var ErrLimit = errors.New("store: limit reached")

// PushSubscription is one device's Web Push subscription (issue 10.3).
// SubEnc holds the endpoint URL and the browser's RFC 8291 keys, sealed
// under the master field key; only Host (the push service) is kept plain.
type PushSubscription struct {
	ID          string
	UserID      string
	EndpointMAC []byte // keyed hash of the endpoint: one row per endpoint
	Host        string
	Label       string // the device name the account holder gave
	SubEnc      []byte
	CreatedAt   time.Time
	LastSuccess *time.Time
}

// PushStore keeps the push subscriptions of accounts.
type PushStore interface {
	// AddPushSubscription stores p. The same endpoint subscribed before (by
	// this or another account: a shared device belongs to whoever turned
	// notifications on last) is replaced. ErrLimit when the account
	// already has max others.
	AddPushSubscription(ctx context.Context, p PushSubscription, max int) error
	// PushSubscriptions lists an account's devices, oldest first.
	PushSubscriptions(ctx context.Context, userID string) ([]PushSubscription, error)
	PushSubscriptionByID(ctx context.Context, id string) (*PushSubscription, error)
	// DeletePushSubscription removes one of userID's devices; ErrNotFound
	// if it is not theirs (or already gone).
	DeletePushSubscription(ctx context.Context, userID, id string) error
	// PushDelivered records pushes their push services accepted (one
	// transaction for all ids).
	PushDelivered(ctx context.Context, at time.Time, ids ...string) error
}

const pushCols = `id, user_id, endpoint_mac, host, label, sub_enc, created_at, last_success_at`

func scanPush(row interface{ Scan(...any) error }) (*PushSubscription, error) {
	var p PushSubscription
	var created int64
	var last sql.NullInt64
	err := row.Scan(&p.ID, &p.UserID, &p.EndpointMAC, &p.Host, &p.Label, &p.SubEnc, &created, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	p.CreatedAt, p.LastSuccess = fromUnix(created), fromNull(last)
	return &p, nil
}

func (s *SQL) AddPushSubscription(ctx context.Context, p PushSubscription, max int) error {
	// Serializable on PostgreSQL (as UpdateUser): two subscriptions at once
	// would otherwise both count below max and both insert.
	return s.txWith(ctx, s.userTx, func(tx *sql.Tx) error {
		// Lock the account row first: on PostgreSQL (read committed)
		// concurrent subscriptions would otherwise each count the rows
		// before the others' inserts and all pass the bound. SQLite holds
		// its write lock from BEGIN already.
		if _, err := tx.ExecContext(ctx, `UPDATE users SET updated_at = updated_at WHERE id = $1`, p.UserID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM push_subscriptions WHERE endpoint_mac = $1`, p.EndpointMAC); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_subscriptions WHERE user_id = $1`, p.UserID).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return ErrLimit
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO push_subscriptions (`+pushCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)`,
			p.ID, p.UserID, p.EndpointMAC, p.Host, p.Label, p.SubEnc, unix(p.CreatedAt))
		if isUnique(err) {
			return ErrExists
		}
		return err
	})
}

func (s *SQL) PushSubscriptions(ctx context.Context, userID string) ([]PushSubscription, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+pushCols+` FROM push_subscriptions WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PushSubscription
	for rows.Next() {
		p, err := scanPush(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *p)
	}
	return out, rows.Err()
}

func (s *SQL) PushSubscriptionByID(ctx context.Context, id string) (*PushSubscription, error) {
	return scanPush(s.db.QueryRowContext(ctx, `SELECT `+pushCols+` FROM push_subscriptions WHERE id = $1`, id))
}

func (s *SQL) DeletePushSubscription(ctx context.Context, userID, id string) error {
	res, err := s.exec(ctx, `DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2`, id, userID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *SQL) PushDelivered(ctx context.Context, at time.Time, ids ...string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE push_subscriptions SET last_success_at = $1 WHERE id = $2`, unix(at), id); err != nil {
				return err
			}
		}
		return nil
	})
}
