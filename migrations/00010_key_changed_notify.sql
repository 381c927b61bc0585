-- +goose Up
-- The api keeps each verified key's row (its HMAC, scopes, expiry,
-- revocation, and the account's plan) for at most a second
-- (api/keycache.go). These triggers tell every api process, at the commit,
-- which rows to drop, so a revocation, a rotation or a plan change takes
-- effect in milliseconds; the second is only the bound when a notification
-- is late or lost. The payload is "key <key id>" or "account <account id>".
-- Triggers, so that every path that changes these columns (the API,
-- `mocd admin`, an operator's SQL) sends it. last_used_at, written every few
-- seconds, sends nothing.
-- +goose StatementBegin
CREATE FUNCTION mocd_notify_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    row_id text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_id := OLD.id;
    ELSE
        row_id := NEW.id;
    END IF;
    IF TG_TABLE_NAME = 'accounts' THEN
        PERFORM pg_notify('mocd_key_changed', 'account ' || row_id);
    ELSE
        PERFORM pg_notify('mocd_key_changed', 'key ' || row_id);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER api_keys_notify_changed AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN (OLD.secret_hash IS DISTINCT FROM NEW.secret_hash OR OLD.scopes IS DISTINCT FROM NEW.scopes
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION mocd_notify_key_changed();
CREATE TRIGGER api_keys_notify_deleted AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION mocd_notify_key_changed();
CREATE TRIGGER accounts_notify_changed AFTER UPDATE ON accounts
    FOR EACH ROW WHEN (OLD.plan IS DISTINCT FROM NEW.plan OR OLD.email IS DISTINCT FROM NEW.email)
    EXECUTE FUNCTION mocd_notify_key_changed();

-- +goose Down
DROP TRIGGER accounts_notify_changed ON accounts;
DROP TRIGGER api_keys_notify_deleted ON api_keys;
DROP TRIGGER api_keys_notify_changed ON api_keys;
DROP FUNCTION mocd_notify_key_changed();
