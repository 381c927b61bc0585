-- pgbench script: the Postgres statements of ONE poll
-- (GET /api/v1/operations/:id), copied from store/keys.go and
-- store/operations.go: authenticate, then read the operation. Run by
-- cmd/mocdbench with -M extended, as lib/pq sends them.
-- authenticate: the key and its account's plan (store.GetPrincipal)
SELECT k.id, k.account_id, k.name, k.prefix, k.secret_hash, k.scopes, k.created_at, k.last_used_at, k.expires_at, k.revoked_at, a.plan, a.email FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = 'key_pgbench';
-- the operation (store.GetOperation)
SELECT seq, id, account_id, instance_id, type, status, error_code, error_message, attempts, created_at, started_at, finished_at, enqueued_at FROM operations WHERE id = 'op_pgbench_poll' AND account_id = 'acct_pgbench';
