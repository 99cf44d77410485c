-- +goose Up
-- Issue #4: a recipient's secure reply is kept in their own thread: a copy
-- sealed to them, linked to the message it answers.
ALTER TABLE messages ADD COLUMN reply_to TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_reply_to ON messages(reply_to);

-- +goose Down
DROP INDEX messages_reply_to;
ALTER TABLE messages DROP COLUMN reply_to;
