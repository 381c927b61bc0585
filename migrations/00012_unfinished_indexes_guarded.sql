-- +goose Up
-- The partial indexes of unfinished rows serve only the queries they were
-- made for.
--
-- Postgres lets a partial index serve any query whose WHERE implies the
-- index's predicate, and prices it from the table's statistics. Those are
-- gathered by ANALYZE, which runs rarely on a large table (after a tenth of
-- it has changed), and almost every operation and delivery it samples has
-- finished. So it believes these indexes hold about one row each, even when
-- thousands of operations wait (a worker outage, a burst of accepts) or
-- deliveries retry (a receiver down). Believing that, it scanned a whole
-- index of unfinished rows rather than the primary key, filtering on id:
-- measured in `make bench` (auto_explain), the accept's delete check read
-- all 6,595 pending operations of the system, 3,300 buffers, 1.3 ms of
-- Postgres CPU per accept; the worker's start and finish of one operation,
-- by id, read the same. The more was waiting, the slower each call got,
-- at the moment the system most needed to catch up.
--
-- Each predicate now carries a condition that is always true of a row but
-- that a query implies only if it is one the index is for:
--   * operations_unfinished, the relay's scan of every unfinished
--     operation in seq order (store.UnfinishedOperations): "seq > 0" (seq
--     counts from 1), which only that query states;
--   * the two indexes of one instance's unfinished operations:
--     "instance_id IS NOT NULL" (the column is NOT NULL), which Postgres
--     proves from the query's instance_id = …;
--   * webhook_deliveries_pending, the relay's scan of overdue deliveries
--     (store.DueWebhookDeliveries): "next_attempt_at IS NOT NULL" (NOT NULL
--     too), which it proves from next_attempt_at < ….
-- A statement on one row by id implies none of them, so Postgres can only
-- use the primary key for it. store/plans_test.go checks the hot
-- statements against a backlog the statistics do not know about.
DROP INDEX operations_unfinished;
CREATE INDEX operations_unfinished ON operations (seq)
    WHERE status IN ('pending', 'running') AND seq > 0;
DROP INDEX operations_unfinished_delete;
CREATE INDEX operations_unfinished_delete ON operations (instance_id)
    WHERE type = 'instance.delete' AND status IN ('pending', 'running') AND instance_id IS NOT NULL;
DROP INDEX operations_instance_unfinished;
CREATE INDEX operations_instance_unfinished ON operations (instance_id, seq)
    WHERE status IN ('pending', 'running') AND instance_id IS NOT NULL;
DROP INDEX webhook_deliveries_pending;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL;

-- +goose Down
DROP INDEX webhook_deliveries_pending;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
DROP INDEX operations_instance_unfinished;
CREATE INDEX operations_instance_unfinished ON operations (instance_id, seq)
    WHERE status IN ('pending', 'running');
DROP INDEX operations_unfinished_delete;
CREATE INDEX operations_unfinished_delete ON operations (instance_id)
    WHERE type = 'instance.delete' AND status IN ('pending', 'running');
DROP INDEX operations_unfinished;
CREATE INDEX operations_unfinished ON operations (seq) WHERE status IN ('pending', 'running');
