-- +goose Up
-- Issue #3: second factor, password history, resets, key tracking per message.
ALTER TABLE users ADD COLUMN totp_secret_enc BYTEA;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN pw_history BYTEA;
-- The recipient key each message's key packets are addressed to; after a
-- password reset, messages whose key_fpr differs from the account's await
-- escrow-assisted recovery.
ALTER TABLE messages ADD COLUMN key_fpr TEXT NOT NULL DEFAULT '';
-- claim (first password) or reset (forgotten password).
ALTER TABLE claim_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'claim';

CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users(id),
    code_hash BYTEA NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- +goose Down
DROP TABLE recovery_codes;
ALTER TABLE claim_tokens DROP COLUMN kind;
ALTER TABLE messages DROP COLUMN key_fpr;
ALTER TABLE users DROP COLUMN pw_history;
ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN totp_secret_enc;
