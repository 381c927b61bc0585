-- +goose Up
-- Traces across the outbox (issue 19): the W3C traceparent of the span that
-- wrote the row (the accept transaction of an operation; the operation or
-- the request that queued a webhook delivery), so that whatever carries
-- the row out later continues that trace: a worker woken by migration
-- 00008's NOTIFY (which has no task headers to read), or a task the relay
-- queues again after Redis lost the first. NULL when the writer was not
-- traced. A nullable column without a default: no table rewrite.
ALTER TABLE operations ADD COLUMN traceparent text;
ALTER TABLE webhook_deliveries ADD COLUMN traceparent text;

-- +goose Down
ALTER TABLE webhook_deliveries DROP COLUMN traceparent;
ALTER TABLE operations DROP COLUMN traceparent;
