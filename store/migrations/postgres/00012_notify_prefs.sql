-- +goose Up
-- Issue 10.4: how an account hears of a new message, and the batching of
-- notices. notify_prefs.channels is 'email', 'push' or 'both'; no row: the
-- organisation's default (notify.default_channels).
CREATE TABLE notify_prefs (
    user_id    TEXT PRIMARY KEY REFERENCES users(id),
    channels   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A notice row that may cover later messages names its batch (recipient
-- and channel: opaque ids only); notice_windows.window_end is when the
-- recipient's current window on that batch ends. Both are written in the
-- message's transaction, so the batching survives a restart.
ALTER TABLE outbox ADD COLUMN batch_key TEXT;
CREATE INDEX outbox_batch ON outbox(batch_key, next_attempt_at) WHERE batch_key IS NOT NULL AND sent_at IS NULL;
CREATE TABLE notice_windows (
    batch_key  TEXT PRIMARY KEY,
    window_end BIGINT NOT NULL
);

-- +goose Down
DROP TABLE notice_windows;
DROP INDEX outbox_batch;
ALTER TABLE outbox DROP COLUMN batch_key;
DROP TABLE notify_prefs;
