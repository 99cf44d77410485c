package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
)

// Kinds of MessageCopy (issue 13.2, 13.3).
const (
	// CopySender is sealed to the sender's own account key (and escrow):
	// the subject on their Sent page.
	CopySender = "sender"
	// CopyReview is sealed to the keys of the admins who may review a held
	// message (and escrow): subject and preview in the quarantine. It is
	// deleted in the transaction that decides the hold.
	CopyReview = "review"
)

// MessageCopy is a small summary of one message sealed to someone other
// than its recipient. Attachments is a count, not PHI; the rest is
// ciphertext (key packets kept apart, as for messages).
type MessageCopy struct {
	MessageID   string
	Kind        string
	KeyPackets  []byte
	Data        []byte
	Attachments int
}

// CopyStore holds the copies (copies.go).
type CopyStore interface {
	// MessageCopies returns the copies of kind for ids, by message id;
	// messages without one are absent. At most maxCopyIDs ids at once.
	MessageCopies(ctx context.Context, kind string, ids ...string) (map[string]MessageCopy, error)
	// ReviewCopy returns the review copy of a message that is still held,
	// and commits the entries audit seals in the same transaction: a
	// preview is never read without its entry (invariant 8). ErrNotFound
	// when the message is not held or has no review copy (nothing is
	// recorded then).
	ReviewCopy(ctx context.Context, id string, audit AuditFunc) (*MessageCopy, error)
}

// maxCopyIDs bounds one MessageCopies call (a page lists at most a few
// hundred messages).
const maxCopyIDs = 1000

var errTooManyIDs = errors.New("store: too many ids in one call")

func insertCopies(ctx context.Context, tx *sql.Tx, copies []MessageCopy) error {
	for _, c := range copies {
		if _, err := tx.ExecContext(ctx, `INSERT INTO message_copies (message_id, kind, key_packets, data, attachments)
			VALUES ($1,$2,$3,$4,$5)`, c.MessageID, c.Kind, c.KeyPackets, c.Data, c.Attachments); err != nil {
			return err
		}
	}
	return nil
}

func (s *SQL) MessageCopies(ctx context.Context, kind string, ids ...string) (map[string]MessageCopy, error) {
	out := map[string]MessageCopy{}
	if len(ids) == 0 {
		return out, nil
	}
	if len(ids) > maxCopyIDs {
		return nil, errTooManyIDs
	}
	args := []any{kind}
	marks := make([]string, len(ids))
	for i, id := range ids {
		args = append(args, id)
		marks[i] = "$" + strconv.Itoa(i+2)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT message_id, kind, key_packets, data, attachments FROM message_copies
		WHERE kind = $1 AND message_id IN (`+strings.Join(marks, ",")+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c MessageCopy
		if err := rows.Scan(&c.MessageID, &c.Kind, &c.KeyPackets, &c.Data, &c.Attachments); err != nil {
			return nil, err
		}
		out[c.MessageID] = c
	}
	return out, rows.Err()
}

func (s *SQL) ReviewCopy(ctx context.Context, id string, audit AuditFunc) (*MessageCopy, error) {
	var c *MessageCopy
	err := s.auditedTx(ctx, func(tx *sql.Tx) error {
		c = &MessageCopy{}
		err := tx.QueryRowContext(ctx, `SELECT c.message_id, c.kind, c.key_packets, c.data, c.attachments
			FROM message_copies c JOIN messages m ON m.id = c.message_id
			WHERE c.message_id = $1 AND c.kind = $2 AND m.state = $3`, id, CopyReview, StateQuarantined).
			Scan(&c.MessageID, &c.Kind, &c.KeyPackets, &c.Data, &c.Attachments)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return s.appendAudit(ctx, tx, audit)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// deleteCopies removes a message's copies of kind ("" every kind) in tx.
func deleteCopies(ctx context.Context, tx *sql.Tx, id, kind string) error {
	if kind == "" {
		_, err := tx.ExecContext(ctx, `DELETE FROM message_copies WHERE message_id = $1`, id)
		return err
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM message_copies WHERE message_id = $1 AND kind = $2`, id, kind)
	return err
}
