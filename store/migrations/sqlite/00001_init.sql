-- +goose Up
-- No plaintext PHI in any column: addresses are a blind index plus a sealed
-- copy; message content and its inbox summary are OpenPGP ciphertext.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    email_index         BLOB NOT NULL UNIQUE,
    email_enc           BLOB NOT NULL,
    role                TEXT NOT NULL,
    status              TEXT NOT NULL,
    pw_params           TEXT NOT NULL DEFAULT '',
    pw_salt             BLOB,
    pw_verifier         BLOB,
    key_fpr             TEXT NOT NULL,
    public_key          BLOB NOT NULL,
    private_key_wrapped BLOB,
    key_wrap            TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE app_passwords (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    mac        BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX app_passwords_active_name ON app_passwords(user_id, name) WHERE revoked_at IS NULL;

CREATE TABLE messages (
    id           TEXT PRIMARY KEY,
    recipient_id TEXT NOT NULL REFERENCES users(id),
    sender_id    TEXT NOT NULL REFERENCES users(id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    policy       TEXT NOT NULL,
    key_packets  BLOB NOT NULL,
    body         BLOB NOT NULL,
    summary_keys BLOB NOT NULL,
    summary      BLOB NOT NULL,
    read_at      INTEGER
);
CREATE INDEX messages_recipient ON messages(recipient_id, created_at);

CREATE TABLE claim_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX claim_tokens_user ON claim_tokens(user_id);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    user_id         TEXT REFERENCES users(id),
    message_id      TEXT,
    payload         BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    sent_at         INTEGER,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox(sent_at, next_attempt_at);

-- +goose Down
DROP TABLE outbox;
DROP TABLE claim_tokens;
DROP TABLE messages;
DROP TABLE app_passwords;
DROP TABLE users;
