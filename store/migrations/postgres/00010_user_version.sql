-- +goose Up
-- Issue 8.8: every write to an account row counts up its version, and a
-- read-modify-write of status or role commits only if the version is the
-- one it read (compare-and-set), so concurrent changes never revert each
-- other.
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE users DROP COLUMN version;
