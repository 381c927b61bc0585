-- +goose Up
-- A pending operation can be cancelled: a new terminal status.
ALTER TABLE operations DROP CONSTRAINT operations_status_check;
ALTER TABLE operations ADD CONSTRAINT operations_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')) NOT VALID;
ALTER TABLE operations VALIDATE CONSTRAINT operations_status_check;
DROP INDEX operations_finished;
CREATE INDEX operations_finished ON operations (finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');
-- GET /operations?created_after=&created_before= reads a time range of one
-- account through this index; the type filter rides on operations_account_seq.
CREATE INDEX operations_account_created ON operations (account_id, created_at);

-- The event feed (GET /events, /events/stream): every event webhooks
-- deliver, whether or not an endpoint subscribes to it, written in the
-- transaction of the change it reports. payload is the envelope exactly as
-- webhooks deliver it. seq is the feed's cursor: writers of one account's
-- events take a per-account transaction lock before drawing it (see
-- store.QueueWebhookEvent), so within an account seq order is commit order
-- and a reader that has seen seq N has seen every earlier one.
CREATE TABLE events (
    seq        bigserial PRIMARY KEY,
    id         text NOT NULL,
    account_id text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type       text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_account_seq ON events (account_id, seq);
CREATE INDEX events_created ON events (created_at);

-- The highest seq of each account's events that retention has deleted: a
-- cursor below it may have lost events to retention, so resuming from it
-- is 410 cursor_expired. Per account, so that an account idle for longer
-- than the retention loses nothing and its cursors stay good.
CREATE TABLE events_pruned (
    account_id text PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    seq        bigint NOT NULL
);

-- Wake-ups (DESIGN.md, "Waiting and watching"): a NOTIFY is delivered only
-- when its transaction commits, so a listener hears of exactly the commits
-- that finished an operation or recorded an event, on every api replica.
-- Triggers send them so that no path that finishes an operation can forget.
-- +goose StatementBegin
CREATE FUNCTION mocd_notify_operation_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mocd_operation_finished', NEW.id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER operations_notify_finished AFTER UPDATE OF status ON operations
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION mocd_notify_operation_finished();

-- +goose StatementBegin
CREATE FUNCTION mocd_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mocd_event', NEW.account_id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION mocd_notify_event();

-- +goose Down
DROP TRIGGER events_notify ON events;
DROP FUNCTION mocd_notify_event();
DROP TRIGGER operations_notify_finished ON operations;
DROP FUNCTION mocd_notify_operation_finished();
DROP TABLE events_pruned;
DROP TABLE events;
DROP INDEX operations_account_created;
DROP INDEX operations_finished;
CREATE INDEX operations_finished ON operations (finished_at) WHERE status IN ('succeeded', 'failed');
UPDATE operations SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE operations DROP CONSTRAINT operations_status_check;
ALTER TABLE operations ADD CONSTRAINT operations_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed'));
