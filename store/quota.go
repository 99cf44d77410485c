package store

import "context"

// StoredBytes is what an account's sent messages occupy in the store: the
// summed size of every copy it sent whose ciphertext is still held (not yet
// purged after recall, denial or expiry), quarantined copies included. The
// per-account stored quota (issue 8.5) is checked against it; it is
// computed from the store, so every node sees the same figure, from the
// messages_sender index alone (migration 00019).
func (s *SQL) StoredBytes(ctx context.Context, senderID string) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM messages
		WHERE sender_id = $1 AND purged_at IS NULL`, senderID).Scan(&n)
	return n, err
}
