-- +goose Up
-- Pick-up latency: a worker hears of a new operation the moment its
-- accept commits (NOTIFY is delivered only on commit), instead of at its
-- next Asynq poll, and starts it at once. The payload is
-- "<operation id> <instance id>", so the worker can take the instance's
-- lock before reading anything. The Asynq task stays the durable path: a
-- notification is never needed, only faster. A trigger, so that every path
-- that accepts an operation sends it.
-- +goose StatementBegin
CREATE FUNCTION mocd_notify_operation_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mocd_operation_created', NEW.id || ' ' || NEW.instance_id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER operations_notify_created AFTER INSERT ON operations
    FOR EACH ROW EXECUTE FUNCTION mocd_notify_operation_created();

-- +goose Down
DROP TRIGGER operations_notify_created ON operations;
DROP FUNCTION mocd_notify_operation_created();
