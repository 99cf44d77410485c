-- +goose Up
-- The audit trail (issue #5, DESIGN.md invariant 3). One row per entry,
-- chained: mac = HMAC-SHA256 over this row's fields (details as
-- ciphertext) and the previous row's mac, so an edited, deleted, reordered
-- or forged row breaks the chain (package audit verifies it). Only ids,
-- action names, outcomes and IPs are plaintext; anything that may identify
-- a patient lives in details_enc (AES-256-GCM). Rows are kept at least six
-- years: nothing in phigate deletes or updates them.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    ip          TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    cid         TEXT NOT NULL,
    details_enc BYTEA NOT NULL,
    mac         BYTEA NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log(actor, seq);
CREATE INDEX audit_log_action ON audit_log(action, seq);
CREATE INDEX audit_log_object ON audit_log(object_type, object_id, seq);
CREATE INDEX audit_log_ip ON audit_log(ip, seq);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_cid ON audit_log(cid, seq);

-- Append-only inside the product: any UPDATE, DELETE or TRUNCATE fails,
-- whoever asks (the table owner included). Deploy phigate with a role that
-- has no UPDATE, DELETE or TRUNCATE on audit_log as well (docs/deploy.md):
-- then even dropping these triggers takes the owner. (Someone who can
-- drop them can rewrite rows; the MAC chain and the checkpoints catch what
-- they do next.)
-- +goose StatementBegin
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- +goose Down
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP TRIGGER audit_log_no_delete ON audit_log;
DROP TRIGGER audit_log_no_update ON audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE audit_log;
