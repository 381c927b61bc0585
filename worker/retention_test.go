package worker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/webhook"
)

// TestRetentionJob runs one pass of the periodic job: it prunes, past the
// first batch, everything older than the retention that is finished, keeps
// everything else, and drops Idempotency-Keys after a day.
func TestRetentionJob(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	ctx := context.Background()
	acct, err := store.CreateAccount(ctx, st.DB, "retention@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := st.DB.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// 2,500 audit entries 11 days old (three batches), 7 from 9 days ago.
	exec(`INSERT INTO audit_log (id, account_id, key_id, key_name, method, path, status, client_ip, request_id, created_at)
		SELECT 'log_' || g, $1, 'key_x', 'x', 'POST', '/api/v1/keys', 201, '127.0.0.1', 'req', now() - interval '11 days'
		FROM generate_series(1, 2500) g`, acct.ID)
	exec(`INSERT INTO audit_log (id, account_id, key_id, key_name, method, path, status, client_ip, request_id, created_at)
		SELECT 'log_new' || g, $1, 'key_x', 'x', 'POST', '/api/v1/keys', 201, '127.0.0.1', 'req', now() - interval '9 days'
		FROM generate_series(1, 7) g`, acct.ID)
	inst := id.New(id.Instance)
	exec(`INSERT INTO instances (id, account_id, subdomain, status, fly_region) VALUES ($1, $2, 'kept', 'running', 'iad')`, inst, acct.ID)
	exec(`INSERT INTO operations (id, account_id, instance_id, type, status, created_at, finished_at)
		SELECT 'op_old' || g, $1, $2, 'instance.stop', 'succeeded', now() - interval '12 days', now() - interval '11 days'
		FROM generate_series(1, 1200) g`, acct.ID, inst)
	exec(`INSERT INTO operations (id, account_id, instance_id, type, status, created_at)
		VALUES ('op_stuck', $1, $2, 'instance.start', 'pending', now() - interval '30 days')`, acct.ID, inst)
	exec(`INSERT INTO operations (id, account_id, instance_id, type, status, created_at, finished_at)
		VALUES ('op_recent', $1, $2, 'instance.start', 'failed', now() - interval '12 days', now() - interval '1 day')`, acct.ID, inst)
	exec(`INSERT INTO api_keys (id, account_id, name, prefix, secret_hash, scopes)
		VALUES ('key_retention', $1, 'x', 'moc_retention', '\x00', '{keys:write}')`, acct.ID)
	exec(`INSERT INTO idempotency_keys (account_id, api_key_id, key, method, path, fingerprint, status_code, created_at) VALUES
		($1, 'key_retention', 'old', 'POST', '/api/v1/keys', '\x00', 201, now() - interval '25 hours'),
		($1, 'key_retention', 'new', 'POST', '/api/v1/keys', '\x00', 201, now() - interval '23 hours')`, acct.ID)
	exec(`INSERT INTO webhook_endpoints (id, account_id, url, events, secret_sealed)
		VALUES ('wh_1', $1, 'https://example.com/hook', '{operation.succeeded}', '\x00')`, acct.ID)
	exec(`INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, payload, status, created_at, finished_at) VALUES
		('dlv_old', 'wh_1', $1, 'evt_1', 'operation.succeeded', '\x7b7d', 'failed', now() - interval '12 days', now() - interval '11 days'),
		('dlv_pending', 'wh_1', $1, 'evt_2', 'operation.succeeded', '\x7b7d', 'pending', now() - interval '12 days', NULL)`, acct.ID)

	w := &Worker{st: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)), opts: Options{Retention: 10 * 24 * time.Hour}}
	if err := w.prune(ctx); err != nil {
		t.Fatal(err)
	}

	count := func(q string) int {
		t.Helper()
		var n int
		if err := st.DB.GetContext(ctx, &n, q); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM audit_log`); n != 7 {
		t.Errorf("%d audit entries left, want the 7 recent ones", n)
	}
	var ops []string
	if err := st.DB.SelectContext(ctx, &ops, `SELECT id FROM operations ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if len(ops) != 2 || ops[0] != "op_recent" || ops[1] != "op_stuck" {
		t.Errorf("operations left: %v, want op_recent and op_stuck", ops)
	}
	var keys []string
	if err := st.DB.SelectContext(ctx, &keys, `SELECT key FROM idempotency_keys`); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "new" {
		t.Errorf("idempotency keys left: %v", keys)
	}
	var dlvs []string
	if err := st.DB.SelectContext(ctx, &dlvs, `SELECT id FROM webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	if len(dlvs) != 1 || dlvs[0] != "dlv_pending" {
		t.Errorf("deliveries left: %v", dlvs)
	}

	// The default retention (90 days) keeps all of what is left.
	w.opts.Retention = 0
	if err := w.prune(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT count(*) FROM audit_log`) + count(`SELECT count(*) FROM operations`); n != 9 {
		t.Errorf("the default retention pruned recent rows: %d left", n)
	}
}

// TestResealSecrets (issue 12, item 6): after one pass with the old
// MOC_SECRET_KEY listed as previous, every webhook secret and every
// instance secret (more than one page of them, over two instances) opens
// with the new key alone, so the old one can be dropped.
func TestResealSecrets(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	ctx := context.Background()
	acct, err := store.CreateAccount(ctx, st.DB, "reseal@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	oldBox, _ := webhook.NewSecretBox(bytes.Repeat([]byte{1}, 32))
	newBox, _ := webhook.NewSecretBox(bytes.Repeat([]byte{2}, 32))
	sealed, err := oldBox.Seal("whsec_old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, `INSERT INTO webhook_endpoints (id, account_id, url, events, secret_sealed)
		VALUES ('wh_reseal', $1, 'https://example.com/hook', '{webhook.test}', $2)`, acct.ID, sealed); err != nil {
		t.Fatal(err)
	}
	sealedValue, err := oldBox.Seal("sk-instance-secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range []string{"inst_a", "inst_b"} {
		if _, err := st.DB.ExecContext(ctx, `INSERT INTO instances (id, account_id, subdomain, status, fly_region) VALUES ($1, $2, $1, 'running', 'iad')`, inst, acct.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DB.ExecContext(ctx, `INSERT INTO instance_secrets (instance_id, name, sealed, digest)
			SELECT $1, 'S_' || g, $2, 'x' FROM generate_series(1, $3::int) g`, inst, sealedValue, pruneBatch*3/4); err != nil {
			t.Fatal(err)
		}
	}
	w := &Worker{st: st, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		opts: Options{Webhooks: WebhookOptions{SecretBox: newBox.WithPrevious(oldBox)}}}
	if err := w.resealSecrets(ctx); err != nil {
		t.Fatal(err)
	}
	var instSealed [][]byte
	if err := st.DB.SelectContext(ctx, &instSealed, `SELECT sealed FROM instance_secrets`); err != nil {
		t.Fatal(err)
	}
	if len(instSealed) != 2*(pruneBatch*3/4) {
		t.Fatalf("%d instance secrets", len(instSealed))
	}
	for _, b := range instSealed {
		if got, err := newBox.Open(b); err != nil || got != "sk-instance-secret" {
			t.Fatalf("an instance secret the new key alone opens as %q, %v", got, err)
		}
	}
	var now []byte
	if err := st.DB.GetContext(ctx, &now, `SELECT secret_sealed FROM webhook_endpoints WHERE id = 'wh_reseal'`); err != nil {
		t.Fatal(err)
	}
	if got, err := newBox.Open(now); err != nil || got != "whsec_old" {
		t.Fatalf("the new key alone opens %q, %v", got, err)
	}
	if _, err := oldBox.Open(now); err == nil {
		t.Fatal("still sealed under the old key")
	}
}
