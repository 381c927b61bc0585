-- +goose Up
-- Every authenticated request that changed something, written in the same
-- transaction as the change.
CREATE TABLE audit_log (
    seq          bigserial PRIMARY KEY,
    account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_id       text NOT NULL,
    key_name     text NOT NULL,
    method       text NOT NULL,
    path         text NOT NULL,
    status       integer NOT NULL,
    operation_id text,
    client_ip    text NOT NULL,
    request_id   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_account_seq ON audit_log (account_id, seq DESC);
CREATE INDEX audit_log_account_key_seq ON audit_log (account_id, key_id, seq DESC);
CREATE INDEX audit_log_created ON audit_log (created_at);

-- API requests per key per UTC day, flushed from each api process's
-- in-memory counters every few seconds.
CREATE TABLE usage_requests (
    account_id text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_id     text NOT NULL,
    day        date NOT NULL,
    requests   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day, key_id)
);

-- +goose Down
DROP TABLE usage_requests;
DROP TABLE audit_log;
