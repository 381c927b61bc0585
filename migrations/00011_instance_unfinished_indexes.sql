-- +goose Up
-- Questions about one instance's unfinished operations, asked on every
-- accept and every run, answered from that instance's rows alone.
--
-- A lifecycle call's accept asks whether a delete of the instance is
-- unfinished (store.InsertCallOperation). Postgres answered it from
-- operations_unfinished, the relay's index of every unfinished operation
-- in the system, filtering on instance and type: the more operations
-- waiting anywhere (a worker outage, a burst of accepts), the slower every
-- accept got. With 5,000 operations pending elsewhere the check took
-- 1.3 ms of Postgres CPU; from this index, which holds only the unfinished
-- deletes, 0.015 ms.
CREATE INDEX operations_unfinished_delete ON operations (instance_id)
    WHERE type = 'instance.delete' AND status IN ('pending', 'running');
-- Whether an instance has an unfinished operation (older than one about
-- to run, store.OperationToRun; any, for the reconciler), and which are
-- pending: from the instance's unfinished rows rather than its whole
-- history (operations_instance_seq) or everyone's unfinished ones.
CREATE INDEX operations_instance_unfinished ON operations (instance_id, seq)
    WHERE status IN ('pending', 'running');

-- +goose Down
DROP INDEX operations_instance_unfinished;
DROP INDEX operations_unfinished_delete;
