-- +goose Up
-- Issue 13.9: each notice to a recipient carries a short random reference
-- (not derived from anything of the message) that the portal shows again
-- after sign-in, so a cautious patient can tell the notice is genuine.
-- '' for rows without one (pushes, staff reports, rows made before).
ALTER TABLE outbox ADD COLUMN reference TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_user_created ON outbox(user_id, created_at);

-- +goose Down
DROP INDEX outbox_user_created;
ALTER TABLE outbox DROP COLUMN reference;
