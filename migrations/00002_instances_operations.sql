-- +goose Up
CREATE TABLE instances (
    id             text PRIMARY KEY,
    account_id     text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    subdomain      text NOT NULL,
    status         text NOT NULL,
    fly_region     text NOT NULL,
    fly_app        text,
    fly_machine_id text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
-- A subdomain is unique among live instances of all accounts; a deleted
-- instance frees its name.
CREATE UNIQUE INDEX instances_subdomain_live ON instances (subdomain) WHERE status <> 'deleted';
CREATE INDEX instances_account_live ON instances (account_id, created_at) WHERE status <> 'deleted';

-- seq orders operations (accept order, keyset paging); id is the public handle.
CREATE TABLE operations (
    seq           bigserial NOT NULL UNIQUE,
    id            text PRIMARY KEY,
    account_id    text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    instance_id   text NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    type          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    error_code    text,
    error_message text,
    attempts      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    enqueued_at   timestamptz
);
CREATE INDEX operations_account_seq ON operations (account_id, seq DESC);
CREATE INDEX operations_account_status_seq ON operations (account_id, status, seq DESC);
CREATE INDEX operations_instance_seq ON operations (instance_id, seq DESC);
CREATE INDEX operations_unfinished ON operations (seq) WHERE status IN ('pending', 'running');

CREATE TABLE instance_events (
    seq          bigserial PRIMARY KEY,
    id           text NOT NULL UNIQUE,
    account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    instance_id  text NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    operation_id text,
    from_status  text,
    to_status    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instance_events_instance_seq ON instance_events (instance_id, seq DESC);

-- One row per (account, Idempotency-Key). status_code is NULL while the first
-- request is in flight; the response is written in the same transaction as
-- the operation it reports.
CREATE TABLE idempotency_keys (
    account_id       text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key              text NOT NULL,
    method           text NOT NULL,
    path             text NOT NULL,
    fingerprint      bytea NOT NULL,
    status_code      integer,
    response_headers jsonb,
    response_body    bytea,
    -- The body is sealed with MOC_SECRET_KEY: answers such as a new API
    -- key's token or a webhook secret must not rest in clear.
    response_sealed  boolean NOT NULL DEFAULT false,
    locked_at        timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE instance_events;
DROP TABLE operations;
DROP TABLE instances;
