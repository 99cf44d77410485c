-- +goose Up
-- Issue #4: versioned data-sharing policy, registered recipient keys, and
-- the decision recorded on each message (rule, version, detector counts;
-- never matched values).
CREATE TABLE policy_versions (
    id         BIGINT PRIMARY KEY,
    author_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    body       TEXT NOT NULL
);

-- The armored key names its owner's address in its user ids, so it is
-- sealed like every other address; email_index finds it.
CREATE TABLE recipient_keys (
    email_index    BYTEA PRIMARY KEY,
    fingerprint    TEXT NOT NULL,
    public_key_enc BYTEA NOT NULL,
    added_by       TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

ALTER TABLE messages ADD COLUMN decision TEXT NOT NULL DEFAULT '';
-- delivered (visible to the recipient), quarantined (held for an admin),
-- denied (an admin refused it; kept until purge).
ALTER TABLE messages ADD COLUMN state TEXT NOT NULL DEFAULT 'delivered';
CREATE INDEX messages_state ON messages(state, created_at);

-- +goose Down
DROP INDEX messages_state;
ALTER TABLE messages DROP COLUMN state;
ALTER TABLE messages DROP COLUMN decision;
DROP TABLE recipient_keys;
DROP TABLE policy_versions;
