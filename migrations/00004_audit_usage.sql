-- +goose Up
-- Every authenticated request that changed something, written in the same
-- transaction as the change. seq breaks ties of created_at; id is the
-- public handle, random so that it says nothing about the platform's volume.
-- No index on id: no route reads one entry by it, and every index is paid
-- for on the request path.
CREATE TABLE audit_log (
    seq          bigserial PRIMARY KEY,
    id           text NOT NULL,
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
-- The log reads newest first by (created_at, seq): a time range and a
-- cursor are then both bounds of one range of these indexes, however deep
-- or however far back.
CREATE INDEX audit_log_account_created ON audit_log (account_id, created_at, seq);
CREATE INDEX audit_log_account_key_created ON audit_log (account_id, key_id, created_at, seq);
-- For retention: the oldest entries of every account, in batches.
CREATE INDEX audit_log_created ON audit_log (created_at);

-- API requests per key per UTC day, flushed from each api process's
-- in-memory counters every few seconds (an upsert that adds).
CREATE TABLE usage_requests (
    account_id text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_id     text NOT NULL,
    day        date NOT NULL,
    requests   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day, key_id)
);

-- Retention finds finished operations and webhook deliveries by age; only
-- finished rows enter these indexes.
CREATE INDEX operations_finished ON operations (finished_at) WHERE status IN ('succeeded', 'failed');
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status <> 'pending';

-- Instance-hours read an instance's status changes by time: the last one
-- before a range and those inside it.
CREATE INDEX instance_events_instance_created ON instance_events (instance_id, created_at, seq);

-- +goose Down
DROP INDEX instance_events_instance_created;
DROP INDEX webhook_deliveries_finished;
DROP INDEX operations_finished;
DROP TABLE usage_requests;
DROP TABLE audit_log;
