-- +goose Up
-- Issue 12.5: one index of a sender's messages instead of two, and new
-- rows append to it. messages_sender_stored (00017) put each new message
-- at its size among the sender's, a random page of an index as large as
-- the sender's history; messages_sender (00006) was a second insert for
-- every message. This one serves both: the Sent page (sender, newest
-- first) and the stored-bytes quota's SUM(size) over the unpurged copies,
-- answered from the index alone (purged_at lies after the body in the
-- row: reading it there walks the ciphertext).
DROP INDEX messages_sender_stored;
DROP INDEX messages_sender;
CREATE INDEX messages_sender ON messages(sender_id, created_at, purged_at, size);

-- +goose Down
DROP INDEX messages_sender;
CREATE INDEX messages_sender ON messages(sender_id, created_at);
CREATE INDEX messages_sender_stored ON messages(sender_id, purged_at, size);
