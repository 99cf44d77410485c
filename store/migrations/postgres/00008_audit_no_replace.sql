-- +goose Up
-- The SQLite migration of this number stops INSERT OR REPLACE, which there
-- deletes the old row without firing the DELETE trigger. PostgreSQL has no
-- such statement: a duplicate seq fails on the primary key, and
-- INSERT ... ON CONFLICT DO UPDATE fires audit_log_no_update (00005).
-- Kept, empty, so both dialects count the same versions.
SELECT 1;

-- +goose Down
SELECT 1;
