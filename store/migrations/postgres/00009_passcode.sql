-- +goose Up
-- Issue #4: a rule can require a passcode (given to the recipient out of
-- band by the sender) before a message's first access; only its keyed hash
-- is kept.
ALTER TABLE messages ADD COLUMN passcode_hash BYTEA;
ALTER TABLE messages ADD COLUMN passcode_ok_at BIGINT;

-- +goose Down
ALTER TABLE messages DROP COLUMN passcode_ok_at;
ALTER TABLE messages DROP COLUMN passcode_hash;
