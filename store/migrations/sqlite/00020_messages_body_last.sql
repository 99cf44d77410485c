-- +goose Up
-- Issue 12: the messages table again, with the ciphertext last. SQLite
-- reads a row's columns in order and keeps what does not fit a page in a
-- chain of overflow pages, so every column that later migrations added
-- after body (state, reply_to, purged_at, dispose_at...) and the summary
-- could only be read by walking the whole body: an inbox of 200 messages
-- read every body's overflow pages (15 % of its CPU), and so did the
-- purge and the admin lists. Now the small columns come first, then the
-- summary, then the body.
--
-- Copies the table in one transaction: the database file grows by the
-- messages' size and the old pages become free pages that later messages
-- reuse (docs/deploy.md). message_copies references messages with ON
-- DELETE CASCADE and foreign keys are on, so dropping the old table
-- empties it: its rows are kept aside and put back.
CREATE TABLE messages_body_last (
    id             TEXT PRIMARY KEY,
    recipient_id   TEXT NOT NULL REFERENCES users(id),
    sender_id      TEXT NOT NULL REFERENCES users(id),
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    size           INTEGER NOT NULL,
    policy         TEXT NOT NULL,
    read_at        INTEGER,
    key_fpr        TEXT NOT NULL DEFAULT '',
    decision       TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL DEFAULT 'delivered',
    purged_at      INTEGER,
    reply_to       TEXT NOT NULL DEFAULT '',
    passcode_hash  BLOB,
    passcode_ok_at INTEGER,
    dispose_at     INTEGER,
    summary_keys   BLOB NOT NULL,
    summary        BLOB NOT NULL,
    key_packets    BLOB NOT NULL,
    body           BLOB NOT NULL
);
INSERT INTO messages_body_last (id, recipient_id, sender_id, created_at, expires_at, size, policy, read_at, key_fpr,
    decision, state, purged_at, reply_to, passcode_hash, passcode_ok_at, dispose_at, summary_keys, summary, key_packets, body)
SELECT id, recipient_id, sender_id, created_at, expires_at, size, policy, read_at, key_fpr,
    decision, state, purged_at, reply_to, passcode_hash, passcode_ok_at, dispose_at, summary_keys, summary, key_packets, body
FROM messages ORDER BY rowid;
CREATE TABLE message_copies_kept AS SELECT message_id, kind, key_packets, data, attachments FROM message_copies;
DROP TABLE messages;
ALTER TABLE messages_body_last RENAME TO messages;
INSERT INTO message_copies (message_id, kind, key_packets, data, attachments)
SELECT message_id, kind, key_packets, data, attachments FROM message_copies_kept;
DROP TABLE message_copies_kept;
CREATE INDEX messages_recipient ON messages(recipient_id, created_at);
CREATE INDEX messages_state ON messages(state, created_at);
CREATE INDEX messages_reply_to ON messages(reply_to);
CREATE INDEX messages_dispose ON messages(dispose_at) WHERE purged_at IS NULL;
CREATE INDEX messages_sender ON messages(sender_id, created_at, purged_at, size);

-- +goose Down
-- The column order is not part of the schema's meaning: nothing to undo.
SELECT 1;
