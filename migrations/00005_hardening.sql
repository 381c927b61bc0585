-- +goose Up
-- Idempotency-Keys are scoped to the API key that sent them (API.md): a
-- replay must never hand one key an answer another key obtained, such as a
-- more powerful key's token. Rows stored before this migration do not say
-- which key sent them, so they cannot be attributed; they are dropped (a
-- retry across the upgrade runs afresh; keys live 24 hours anyway).
DELETE FROM idempotency_keys;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys
    ADD COLUMN api_key_id text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (api_key_id, key);

-- +goose Down
DELETE FROM idempotency_keys;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys DROP COLUMN api_key_id;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (account_id, key);
