-- +goose Up
-- "A delete of this instance is under way" is a fact of the instance row:
-- deleting_operation_id is the unfinished instance.delete, set by the
-- statement that accepts it and cleared by the one that finishes or
-- cancels it.
--
-- Every call on an instance locks its row first, and a row lock hands the
-- statement the row's newest version. So a call reads this column as it is
-- once the lock is held, even in the statement that took the lock; the
-- check it replaces (NOT EXISTS an unfinished delete among the operations)
-- had to be a statement of its own after the lock, since a subquery reads
-- the snapshot taken before the statement waited (issue 12). With it, a
-- lifecycle call's accept locks the instance, checks, and queues its
-- operation in one statement (store.AcceptCallOperation).
ALTER TABLE instances ADD COLUMN deleting_operation_id text;
UPDATE instances i SET deleting_operation_id = o.id
    FROM operations o
    WHERE o.instance_id = i.id AND o.type = 'instance.delete' AND o.status IN ('pending', 'running');
-- Nothing asks the operations any more.
DROP INDEX operations_unfinished_delete;

-- +goose Down
CREATE INDEX operations_unfinished_delete ON operations (instance_id)
    WHERE type = 'instance.delete' AND status IN ('pending', 'running') AND instance_id IS NOT NULL;
ALTER TABLE instances DROP COLUMN deleting_operation_id;
