-- +goose Up
-- Issue 10.3: a Web Push subscription per device. The endpoint and the
-- browser's keys (RFC 8291 p256dh and auth secret) are sealed under the
-- master field key; endpoint_mac (keyed hash of the endpoint) finds a
-- browser that subscribes again, and host is shown to the account holder
-- instead of the endpoint URL.
CREATE TABLE push_subscriptions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id),
    endpoint_mac    BYTEA NOT NULL UNIQUE,
    host            TEXT NOT NULL,
    label           TEXT NOT NULL DEFAULT '',
    sub_enc         BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    last_success_at BIGINT
);
CREATE INDEX push_subscriptions_user ON push_subscriptions(user_id);

-- +goose Down
DROP TABLE push_subscriptions;
