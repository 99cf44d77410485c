-- +goose Up
-- Every break-glass access, with its written reason sealed under the master
-- field key (a reason may name a patient). The audit trail (issue #5)
-- will carry these too.
CREATE TABLE break_glass (
    id         TEXT PRIMARY KEY,
    actor_id   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at         BIGINT NOT NULL,
    ip         TEXT NOT NULL,
    reason_enc BYTEA NOT NULL
);

-- +goose Down
DROP TABLE break_glass;
