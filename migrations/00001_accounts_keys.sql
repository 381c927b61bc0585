-- +goose Up
CREATE TABLE accounts (
    id         text PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    plan       text NOT NULL CHECK (plan IN ('free', 'pro', 'business')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The secret itself is never stored: only HMAC-SHA256(pepper, secret).
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id, created_at);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE accounts;
