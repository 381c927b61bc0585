-- +goose Up
-- secret_sealed is the whsec_ secret sealed with MOC_SECRET_KEY (AES-GCM):
-- the worker must be able to sign with it, so it cannot be a hash.
CREATE TABLE webhook_endpoints (
    id              text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url             text NOT NULL,
    events          text[] NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    secret_sealed   bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id, created_at);

-- One delivery per (event, endpoint): the outbox row, written in the same
-- transaction as the change it reports. id is the webhook-id header, stable
-- across retries. attempts counts the attempts started; while one runs,
-- next_attempt_at is the end of its lease, after which the relay assumes its
-- worker died and queues the next one.
CREATE TABLE webhook_deliveries (
    seq              bigserial NOT NULL UNIQUE,
    id               text PRIMARY KEY,
    endpoint_id      text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id       text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    payload          bytea NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    failure_reason   text,
    enqueued_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX webhook_deliveries_endpoint_seq ON webhook_deliveries (endpoint_id, seq DESC);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- One row per attempt that reached an outcome: an answer (status_code and
-- the first KiB of the body) or an error (timeout, refused connection).
CREATE TABLE webhook_attempts (
    seq           bigserial PRIMARY KEY,
    delivery_id   text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    status_code   integer,
    latency_ms    integer NOT NULL,
    response_body text,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (delivery_id, attempt)
);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
