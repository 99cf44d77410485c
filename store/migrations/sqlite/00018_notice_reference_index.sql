-- +goose Up
-- Issue 13.9: staff look a notice up by the reference a patient reads out
-- (phigate notices reference); outbox rows stay after they are sent, so
-- without an index that would read the whole table.
CREATE INDEX outbox_reference ON outbox(reference) WHERE reference <> '';

-- +goose Down
DROP INDEX outbox_reference;
