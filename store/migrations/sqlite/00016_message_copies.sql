-- +goose Up
-- Issue 13.2/13.3: small summaries of a message (subject, a text preview,
-- the attachment count) sealed to someone other than its recipient, always
-- also to the escrow key:
--   kind 'sender': to the sender's own account key, for their Sent page;
--   kind 'review': to the keys of the admins who may review a held
--   message; deleted in the transaction that decides the hold.
-- attachments is a count (no names); everything else is ciphertext.
CREATE TABLE message_copies (
    message_id  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    key_packets BLOB NOT NULL,
    data        BLOB NOT NULL,
    attachments INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, kind)
);

-- +goose Down
DROP TABLE message_copies;
