-- +goose Up
-- PostgreSQL dialect of migrations/sqlite/00001_init.sql: the same tables,
-- BYTEA for BLOB and BIGINT for INTEGER (timestamps are Unix nanoseconds).
-- No plaintext PHI in any column: addresses are a blind index plus a sealed
-- copy; message content and its inbox summary are OpenPGP ciphertext.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    email_index         BYTEA NOT NULL UNIQUE,
    email_enc           BYTEA NOT NULL,
    role                TEXT NOT NULL,
    status              TEXT NOT NULL,
    pw_params           TEXT NOT NULL DEFAULT '',
    pw_salt             BYTEA,
    pw_verifier         BYTEA,
    key_fpr             TEXT NOT NULL,
    public_key          BYTEA NOT NULL,
    private_key_wrapped BYTEA,
    key_wrap            TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE app_passwords (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    mac        BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE UNIQUE INDEX app_passwords_active_name ON app_passwords(user_id, name) WHERE revoked_at IS NULL;

CREATE TABLE messages (
    id           TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL REFERENCES users(id),
    sender_id    TEXT NOT NULL REFERENCES users(id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    size         BIGINT NOT NULL,
    policy       TEXT NOT NULL,
    key_packets  BYTEA NOT NULL,
    body         BYTEA NOT NULL,
    summary_keys BYTEA NOT NULL,
    summary      BYTEA NOT NULL,
    read_at      BIGINT
);
CREATE INDEX messages_recipient ON messages(recipient_id, created_at);

CREATE TABLE claim_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX claim_tokens_user ON claim_tokens(user_id);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    user_id         TEXT REFERENCES users(id),
    message_id      TEXT,
    payload         BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    sent_at         BIGINT,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox(sent_at, next_attempt_at);

-- +goose Down
DROP TABLE outbox;
DROP TABLE claim_tokens;
DROP TABLE messages;
DROP TABLE app_passwords;
DROP TABLE users;
