-- pgbench script: the Postgres statements of ONE accepted lifecycle call
-- (POST /api/v1/instances/:id/restart with an Idempotency-Key), copied from
-- store/keys.go, store/idempotency.go, store/instances.go,
-- store/operations.go, store/events.go and store/audit.go, in the order
-- api/middleware.go, api/idempotency.go, api/instances.go and api/change.go
-- send them. Client n restarts its own instance inst_pgb_<n> (as every
-- harness client restarts its own), so clients do not queue on one row lock.
-- cmd/mocdbench runs it with
-- -M extended: one Parse/Bind/Execute per statement, as lib/pq sends with
-- binary_parameters. BENCHMARKS.md lists the statements the api really sent
-- for an accept, counted on the wire, to compare.
\set r random(1, 9000000000000000000)
-- (no authentication statement: the api keeps verified key rows for half a
-- second, api/keycache.go, so a key calling as often as the harness's do is
-- read about once in that time, not once per request)
-- claim the Idempotency-Key, committed without waiting for its WAL flush
-- (store.ClaimIdempotencyKey)
WITH async AS (SELECT set_config('synchronous_commit', 'off', true)), claim AS (INSERT INTO idempotency_keys AS k (account_id, api_key_id, key, method, path, fingerprint) SELECT 'acct_pgbench', 'key_pgbench', 'pgb-' || :client_id::text || '-' || :r::text, 'POST', '/api/v1/instances/inst_pgb_' || :client_id::text || '/restart', decode('9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 'hex') FROM async ON CONFLICT (api_key_id, key) DO UPDATE SET method = EXCLUDED.method, path = EXCLUDED.path, fingerprint = EXCLUDED.fingerprint, locked_at = now(), created_at = now() WHERE k.status_code IS NULL AND k.locked_at < now() - make_interval(secs => 120) RETURNING true AS claimed) SELECT true AS claimed, '' AS method, '' AS path, ''::bytea AS fingerprint, NULL::integer AS status_code, NULL::jsonb AS response_headers, NULL::bytea AS response_body FROM claim UNION ALL SELECT false, method, path, fingerprint, status_code, response_headers, response_body FROM idempotency_keys WHERE api_key_id = 'key_pgbench' AND key = 'pgb-' || :client_id::text || '-' || :r::text AND NOT EXISTS (SELECT 1 FROM claim);
BEGIN;
-- lock the instance, queue the operation (unless the instance is deleted or
-- a delete of it is under way), show the transitional status with its event
-- and, for a delete, record it on the instance: one statement
-- (store.AcceptCallOperation); as in the "accept, api alone" scenario,
-- where nothing moves the instance back, it shows "restarting" from the first
-- restart on and only the operation is written
WITH i AS (SELECT status, deleting_operation_id FROM instances WHERE id = 'inst_pgb_' || :client_id::text AND account_id = 'acct_pgbench' FOR NO KEY UPDATE), op AS (INSERT INTO operations (id, account_id, instance_id, type, status, traceparent) SELECT 'op_pgb' || :client_id::text || 'x' || :r::text, 'acct_pgbench', 'inst_pgb_' || :client_id::text, 'instance.restart', 'pending', NULL FROM i WHERE i.status <> 'deleted' AND i.deleting_operation_id IS NULL RETURNING seq, id, account_id, instance_id, type, status, error_code, error_message, attempts, created_at, started_at, finished_at, enqueued_at, version, image, from_state, lease_nonce, rollback_reason), s AS (UPDATE instances SET status = CASE WHEN 'restarting' <> '' THEN 'restarting' ELSE status END, updated_at = now(), deleting_operation_id = CASE WHEN 'instance.restart' = 'instance.delete' THEN 'op_pgb' || :client_id::text || 'x' || :r::text ELSE deleting_operation_id END WHERE id = 'inst_pgb_' || :client_id::text AND EXISTS (SELECT 1 FROM op) AND (('restarting' <> '' AND status <> 'restarting') OR 'instance.restart' = 'instance.delete')), ev AS (INSERT INTO instance_events (id, account_id, instance_id, operation_id, from_status, to_status) SELECT 'evt_pgb' || :client_id::text || 'x' || :r::text, 'acct_pgbench', 'inst_pgb_' || :client_id::text, 'op_pgb' || :client_id::text || 'x' || :r::text, NULLIF((SELECT status FROM i), ''), 'restarting' WHERE EXISTS (SELECT 1 FROM op) AND 'restarting' <> '' AND (SELECT status FROM i) <> 'restarting') SELECT seq, id, account_id, instance_id, type, status, error_code, error_message, attempts, created_at, started_at, finished_at, enqueued_at, version, image, from_state, lease_nonce, rollback_reason FROM op;
-- the audit entry and the answer to replay, one statement in the same
-- transaction (store.InsertAudit with the answer); the body is an
-- Operation's JSON in hex, since pgbench would read its "00:00:00" as
-- variables
WITH audit AS (INSERT INTO audit_log (id, account_id, key_id, key_name, method, path, status, operation_id, client_ip, request_id) VALUES ('log_pgb' || :client_id::text || 'x' || :r::text, 'acct_pgbench', 'key_pgbench', 'admin', 'POST', '/api/v1/instances/inst_pgb_' || :client_id::text || '/restart', 202, 'op_pgb' || :client_id::text || 'x' || :r::text, '127.0.0.1', 'req_pgb' || :r::text)) UPDATE idempotency_keys SET status_code = 202, response_headers = '{"Content-Type":["application/json; charset=utf-8"],"Location":["/api/v1/operations/op_pgbench"]}', response_body = decode('7b226964223a226f705f356748376b4c6d4e32705172537455765778597a3061222c2274797065223a22696e7374616e63652e72657374617274222c22737461747573223a2270656e64696e67222c22696e7374616e63655f6964223a22696e73745f356748376b4c6d4e32705172537455765778597a3061222c22637265617465645f6174223a22323032352d30312d30315430303a30303a30302e3030303030305a222c22737461727465645f6174223a6e756c6c2c2266696e69736865645f6174223a6e756c6c2c226572726f72223a6e756c6c7d', 'hex') WHERE api_key_id = 'key_pgbench' AND key = 'pgb-' || :client_id::text || '-' || :r::text AND status_code IS NULL;
COMMIT;
