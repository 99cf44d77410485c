-- +goose Up
-- Issue 12.5: the stored-bytes quota's SUM(size) over a sender's unpurged
-- copies is answered from this index alone. Through messages_sender it read
-- every row, and purged_at lies after the body in the row, so each copy's
-- whole ciphertext was walked: 0.5 s and more for a sender with 100,000
-- messages stored.
CREATE INDEX messages_sender_stored ON messages(sender_id, purged_at, size);

-- +goose Down
DROP INDEX messages_sender_stored;
