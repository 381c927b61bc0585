-- +goose Up
-- "A delete of this instance is under way" is a fact of the instance row:
-- deleting_operation_id is the unfinished instance.delete. Triggers keep
-- it: the insert of a delete sets it, and the delete's end (succeeded,
-- failed or cancelled) clears it, whichever code wrote the operation (an
-- api replica not yet upgraded, during a deploy, included).
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

-- +goose StatementBegin
CREATE FUNCTION mocd_track_deleting_operation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE instances SET deleting_operation_id = NEW.id WHERE id = NEW.instance_id;
    ELSE
        UPDATE instances SET deleting_operation_id = NULL
            WHERE id = NEW.instance_id AND deleting_operation_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER operations_delete_accepted AFTER INSERT ON operations
    FOR EACH ROW WHEN (NEW.type = 'instance.delete')
    EXECUTE FUNCTION mocd_track_deleting_operation();
CREATE TRIGGER operations_delete_ended AFTER UPDATE OF status ON operations
    FOR EACH ROW WHEN (NEW.type = 'instance.delete' AND NEW.status IN ('succeeded', 'failed', 'cancelled')
        AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION mocd_track_deleting_operation();
-- Nothing asks the operations any more.
DROP INDEX operations_unfinished_delete;

-- +goose Down
CREATE INDEX operations_unfinished_delete ON operations (instance_id)
    WHERE type = 'instance.delete' AND status IN ('pending', 'running') AND instance_id IS NOT NULL;
DROP TRIGGER operations_delete_ended ON operations;
DROP TRIGGER operations_delete_accepted ON operations;
DROP FUNCTION mocd_track_deleting_operation();
ALTER TABLE instances DROP COLUMN deleting_operation_id;
