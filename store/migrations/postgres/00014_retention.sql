-- +goose Up
-- Issue 14.4: each message's disposal deadline, set when it is accepted
-- from its policy rule's retention (the read window's end when the rule
-- says nothing). Rows from before get their read window's end, which is
-- when the purge disposed of them until now.
ALTER TABLE messages ADD COLUMN dispose_at BIGINT;
UPDATE messages SET dispose_at = expires_at;
CREATE INDEX messages_dispose ON messages(dispose_at) WHERE purged_at IS NULL;

-- +goose Down
DROP INDEX messages_dispose;
ALTER TABLE messages DROP COLUMN dispose_at;
