-- +goose Up
-- Issue 12: SQLite rebuilds the messages table with the ciphertext last
-- (00020 there). PostgreSQL keeps large values out of line (TOAST) and
-- reads a column without reading the others' out-of-line values: nothing
-- to do; the migration keeps the two schemas' versions in step.
SELECT 1;

-- +goose Down
SELECT 1;
