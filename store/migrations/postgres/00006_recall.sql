-- +goose Up
-- Issue #4: recall, and deleting the ciphertext of recalled, denied and
-- expired messages on schedule (the row stays, for status and history).
ALTER TABLE messages ADD COLUMN purged_at BIGINT;
CREATE INDEX messages_sender ON messages(sender_id, created_at);

-- +goose Down
DROP INDEX messages_sender;
ALTER TABLE messages DROP COLUMN purged_at;
