-- +goose Up
-- Issue 14.3: key rotation.
--
-- key_epochs: one row per master key the database has been sealed under.
-- state is 'active' (the current key: every sealed value and keyed hash
-- is under it), 'rotating' (a rotation to this key is under way and
-- resumable: the previous active key still opens what it has not reached
-- yet) or 'retired'. A retired epoch's keyed-hash and audit subkeys are
-- kept in sealed, under the active key (sealed_by): keyed hashes are
-- re-keyed by hashing them again (they cannot be recomputed without the
-- secret they cover), and the append-only audit trail keeps the key it
-- was written under. audit_from_seq is the first audit entry under this
-- epoch's keys; the entry just before it is the keys.rotate_master entry
-- that switched, written under the previous key.
CREATE TABLE key_epochs (
    epoch          INTEGER PRIMARY KEY,
    key_id         TEXT NOT NULL UNIQUE,
    state          TEXT NOT NULL,
    audit_from_seq INTEGER NOT NULL DEFAULT 0,
    sealed         BLOB,
    sealed_by      TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    rotated_at     INTEGER,
    resealed       INTEGER NOT NULL DEFAULT 0
);

-- Every gateway signing key's public half, so a message signed before a
-- signing-key rotation still verifies. retired_at is NULL for the key in
-- use.
CREATE TABLE gateway_keys (
    fingerprint TEXT PRIMARY KEY,
    public_key  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);

-- +goose Down
DROP TABLE gateway_keys;
DROP TABLE key_epochs;
