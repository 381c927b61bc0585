package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// seedRetention writes, for account, rows on both sides of a cutoff 10 days
// ago: audit entries, operations (finished or not) and webhook deliveries
// (finished or not, with an attempt each). Each row's request id, id or
// event id says whether it must survive: "keep-…" or "drop-…".
func seedRetention(t testing.TB, db sqlx.ExtContext, accountID string) {
	t.Helper()
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	old := time.Now().Add(-11 * 24 * time.Hour)
	recent := time.Now().Add(-9 * 24 * time.Hour)

	for i, age := range []time.Time{old, old, old, recent, recent} {
		tag := "drop"
		if age == recent {
			tag = "keep"
		}
		exec(`INSERT INTO audit_log (id, account_id, key_id, key_name, method, path, status, client_ip, request_id, created_at)
			VALUES ($1, $2, 'key_x', 'x', 'POST', '/api/v1/keys', 201, '127.0.0.1', $3, $4)`,
			id.New(id.AuditLog), accountID, tag+"-audit-"+string(rune('a'+i)), age)
	}

	inst := id.New(id.Instance)
	exec(`INSERT INTO instances (id, account_id, subdomain, status, fly_region) VALUES ($1, $2, $3, 'running', 'iad')`,
		inst, accountID, "ret-"+id.Random(8))
	ops := []struct {
		tag, status string
		created     time.Time
		finished    *time.Time
	}{
		{"drop", "succeeded", old, &old},
		{"drop", "failed", old, &old},
		{"keep", "succeeded", old, &recent}, // accepted long ago, finished recently
		{"keep", "pending", old, nil},       // never finished: the relay still owes it an outcome
		{"keep", "running", old, nil},
		{"keep", "succeeded", recent, &recent},
	}
	for _, o := range ops {
		exec(`INSERT INTO operations (id, account_id, instance_id, type, status, created_at, finished_at)
			VALUES ($1, $2, $3, 'instance.start', $4, $5, $6)`,
			o.tag+"-op-"+id.Random(6), accountID, inst, o.status, o.created, o.finished)
	}

	ep := id.New(id.Webhook)
	exec(`INSERT INTO webhook_endpoints (id, account_id, url, events, secret_sealed) VALUES ($1, $2, 'https://example.com/hook', '{operation.succeeded}', '\x00')`,
		ep, accountID)
	dlvs := []struct {
		tag, status string
		finished    *time.Time
	}{
		{"drop", "succeeded", &old},
		{"drop", "failed", &old},
		{"keep", "pending", nil},
		{"keep", "succeeded", &recent},
	}
	for _, d := range dlvs {
		dlv := d.tag + "-dlv-" + id.Random(6)
		exec(`INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, payload, status, created_at, finished_at)
			VALUES ($1, $2, $3, $4, 'operation.succeeded', '\x7b7d', $5, $6, $7)`,
			dlv, ep, accountID, id.New(id.Event), d.status, old, d.finished)
		exec(`INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms) VALUES ($1, 1, 200, 5)`, dlv)
	}
}

// survivors lists what is left of the rows seedRetention wrote.
func survivors(t testing.TB, db sqlx.ExtContext) (audit, ops, dlvs []string, attempts int) {
	t.Helper()
	ctx := context.Background()
	if err := sqlx.SelectContext(ctx, db, &audit, `SELECT request_id FROM audit_log ORDER BY request_id`); err != nil {
		t.Fatal(err)
	}
	if err := sqlx.SelectContext(ctx, db, &ops, `SELECT id FROM operations ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if err := sqlx.SelectContext(ctx, db, &dlvs, `SELECT id FROM webhook_deliveries ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if err := sqlx.GetContext(ctx, db, &attempts, `SELECT count(*) FROM webhook_attempts`); err != nil {
		t.Fatal(err)
	}
	return audit, ops, dlvs, attempts
}

func checkOnlyKept(t *testing.T, what string, ids []string, want int) {
	t.Helper()
	if len(ids) != want {
		t.Errorf("%s left: %v, want %d rows", what, ids, want)
	}
	for _, s := range ids {
		if len(s) < 4 || s[:4] != "keep" {
			t.Errorf("%s: %s survived", what, s)
		}
	}
}

// TestPrune: each prune deletes exactly the finished rows older than the
// cutoff, in batches (here of 1, so that the loop is exercised), and
// webhook attempts go with their delivery.
func TestPrune(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	ctx := context.Background()
	acct, err := store.CreateAccount(ctx, st.DB, "ret@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	seedRetention(t, st.DB, acct.ID)
	cutoff := time.Now().Add(-10 * 24 * time.Hour)
	for _, p := range []struct {
		name string
		fn   func(context.Context, sqlx.ExtContext, time.Time, int) (int, error)
		want int
	}{
		{"audit", store.PruneAudit, 3},
		{"operations", store.PruneOperations, 2},
		{"deliveries", store.PruneWebhookDeliveries, 2},
	} {
		total, batches := 0, 0
		for {
			n, err := p.fn(ctx, st.DB, cutoff, 1)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			if n > 1 {
				t.Fatalf("%s: a batch of 1 deleted %d rows", p.name, n)
			}
			total += n
			batches++
			if n < 1 {
				break
			}
		}
		if total != p.want || batches != p.want+1 {
			t.Errorf("%s: pruned %d rows in %d statements, want %d in %d", p.name, total, batches, p.want, p.want+1)
		}
	}
	audit, ops, dlvs, attempts := survivors(t, st.DB)
	checkOnlyKept(t, "audit entries", audit, 2)
	checkOnlyKept(t, "operations", ops, 4)
	checkOnlyKept(t, "deliveries", dlvs, 2)
	if attempts != 2 {
		t.Errorf("%d webhook attempts left, want the 2 of the surviving deliveries", attempts)
	}
}
