-- pgbench script: the Postgres statements of ONE poll
-- (GET /api/v1/operations/:id), copied from store/keys.go and
-- store/operations.go: read the operation. Run by
-- cmd/mocdbench with -M extended, as lib/pq sends them.
-- (no authentication statement: the api keeps verified key rows for half a
-- second, api/keycache.go, so a key polling as often as the harness's do is
-- read about once in that time, not once per request)
-- the operation (store.GetOperation)
SELECT seq, id, account_id, instance_id, type, status, error_code, error_message, created_at, started_at, finished_at FROM operations WHERE id = 'op_pgbench_poll' AND account_id = 'acct_pgbench';
