package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// explained hands the store a transaction that first runs each statement
// as EXPLAIN ANALYZE under a savepoint it rolls back, then for real, and
// keeps what each plan read.
type explained struct {
	*sqlx.Tx
	t     *testing.T
	plans []statementPlan
}

// statementPlan is what one statement read.
type statementPlan struct {
	query   string
	rows    float64  // the most rows one node of the plan went through
	indexes []string // every index it scanned
}

type planNode struct {
	IndexName string     `json:"Index Name"`
	Rows      float64    `json:"Actual Rows"` // per loop
	Loops     float64    `json:"Actual Loops"`
	Removed   float64    `json:"Rows Removed by Filter"` // all loops'
	Plans     []planNode `json:"Plans"`
}

// rows is the most rows one node went through: those it passed on and
// those its filter dropped.
func (n planNode) rows() float64 {
	most := n.Rows*n.Loops + n.Removed
	for _, c := range n.Plans {
		most = max(most, c.rows())
	}
	return most
}

func (n planNode) indexes() []string {
	var out []string
	if n.IndexName != "" {
		out = append(out, n.IndexName)
	}
	for _, c := range n.Plans {
		out = append(out, c.indexes()...)
	}
	return out
}

func (e *explained) explain(ctx context.Context, q string, args []any) {
	e.t.Helper()
	if _, err := e.Tx.ExecContext(ctx, `SAVEPOINT explain`); err != nil {
		e.t.Fatal(err)
	}
	var raw []byte
	err := e.Tx.QueryRowContext(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+q, args...).Scan(&raw)
	if _, rerr := e.Tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT explain`); rerr != nil {
		e.t.Fatal(rerr)
	}
	if err != nil {
		e.t.Fatalf("explain %s: %v", q, err)
	}
	var out []struct{ Plan planNode }
	if err := json.Unmarshal(raw, &out); err != nil || len(out) != 1 {
		e.t.Fatalf("explain %s: %v (%s)", q, err, raw)
	}
	p := out[0].Plan
	e.plans = append(e.plans, statementPlan{query: q, rows: p.rows(), indexes: p.indexes()})
}

func (e *explained) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	e.explain(ctx, q, args)
	return e.Tx.QueryContext(ctx, q, args...)
}

func (e *explained) QueryxContext(ctx context.Context, q string, args ...any) (*sqlx.Rows, error) {
	e.explain(ctx, q, args)
	return e.Tx.QueryxContext(ctx, q, args...)
}

func (e *explained) QueryRowxContext(ctx context.Context, q string, args ...any) *sqlx.Row {
	e.explain(ctx, q, args)
	return e.Tx.QueryRowxContext(ctx, q, args...)
}

func (e *explained) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	e.explain(ctx, q, args)
	return e.Tx.ExecContext(ctx, q, args...)
}

// TestStatementsDoNotReadTheBacklog: the statements of an accept, of a
// run and of a webhook attempt read their own rows, however many
// operations and deliveries wait elsewhere, even when the statistics
// (gathered while everything had finished) say nothing waits. Postgres
// used to answer them from a partial index of every unfinished row, for
// it believed that index empty (migration 00012); the relays' scans still
// use their indexes.
func TestStatementsDoNotReadTheBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "plans@example.com", "business")
	if err != nil {
		t.Fatal(err)
	}
	const instances, finished, waiting = 60, 20000, 3000
	seed := func(stmts ...string) {
		t.Helper()
		err := st.WithTx(ctx, func(tx *sqlx.Tx) error {
			// No NOTIFY per seeded row.
			if _, err := tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
				return err
			}
			for _, q := range stmts {
				var args []any
				if strings.Contains(q, "$1") {
					args = []any{a.ID}
				}
				if _, err := tx.ExecContext(ctx, q, args...); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	seed(
		`INSERT INTO instances (id, account_id, subdomain, status, fly_region)
			SELECT 'inst_plan' || g, $1, 'plan-' || g, 'running', 'iad' FROM generate_series(1, `+fmt.Sprint(instances)+`) g`,
		`INSERT INTO operations (id, account_id, instance_id, type, status, attempts, started_at, finished_at)
			SELECT 'op_done' || g, $1, 'inst_plan' || (1 + g % `+fmt.Sprint(instances)+`), 'instance.restart', 'succeeded', 1, now(), now()
			FROM generate_series(1, `+fmt.Sprint(finished)+`) g`,
		`INSERT INTO webhook_endpoints (id, account_id, url, events, secret_sealed)
			VALUES ('we_plan', $1, 'https://example.com/hook', '{*}', '\x00')`,
		`INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, payload, status, attempts, finished_at)
			SELECT 'dlv_done' || g, 'we_plan', $1, 'evt_done' || g, 'operation.succeeded', '\x7b7d', 'succeeded', 1, now()
			FROM generate_series(1, `+fmt.Sprint(finished)+`) g`,
	)
	// The statistics of a system where everything has finished.
	if _, err := st.DB.ExecContext(ctx, `ANALYZE operations; ANALYZE webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	// Then a backlog (a worker outage; a receiver down) they do not know of.
	seed(
		`INSERT INTO operations (id, account_id, instance_id, type, status)
			SELECT 'op_wait' || g, $1, 'inst_plan' || (1 + g % `+fmt.Sprint(instances)+`), 'instance.restart', 'pending'
			FROM generate_series(1, `+fmt.Sprint(waiting)+`) g`,
		`INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, payload)
			SELECT 'dlv_wait' || g, 'we_plan', $1, 'evt_wait' || g, 'operation.succeeded', '\x7b7d'
			FROM generate_series(1, `+fmt.Sprint(waiting)+`) g`,
	)

	// A statement that reads the backlog goes through thousands of rows;
	// one that reads its own, a few dozen at most (an instance has 50
	// operations waiting).
	const most = waiting / 10
	for _, mode := range []string{"auto", "force_generic_plan"} { // the first runs of a prepared statement, then the rest
		t.Run(mode, func(t *testing.T) {
			tx, err := st.DB.BeginTxx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, `SET LOCAL plan_cache_mode = `+mode); err != nil {
				t.Fatal(err)
			}
			e := &explained{Tx: tx, t: t}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}

			// An accept, then the run of what it accepted.
			inst, err := store.LockInstance(ctx, e, a.ID, "inst_plan7")
			must(err)
			op, err := store.InsertCallOperation(ctx, e, id.New(id.Operation), a.ID, inst, store.OpRestart, store.StatusRestarting)
			must(err)
			call := store.AuditEntry{KeyID: "key_plan", KeyName: "plan", Method: "POST", Path: "/x", Status: 202}
			op9, err := store.AcceptCallOperation(ctx, e, id.New(id.Operation), a.ID, "inst_plan9", store.OpRestart, store.StatusRestarting, &store.CallRecord{Audit: call})
			must(err)
			// The same with an Idempotency-Key's answer.
			_, err = store.AcceptCallOperation(ctx, e, id.New(id.Operation), a.ID, "inst_plan9", store.OpStop, store.StatusStopping, &store.CallRecord{Audit: call,
				Answer:    &store.IdempotentAnswer{APIKeyID: "key_plan", Key: "plan", Status: 202, Headers: json.RawMessage(`{}`), Body: []byte(`{}`)},
				CreatedAt: time.Now()})
			must(err)
			// One more behind op, for its run to hand over.
			_, err = store.InsertCallOperation(ctx, e, id.New(id.Operation), a.ID, inst, store.OpStop, "")
			must(err)
			_, older, err := store.OperationToRun(ctx, e, op.ID)
			must(err)
			if !older {
				t.Error("OperationToRun: no older unfinished operation, want the backlog's")
			}
			if locked, started, err := store.TryLockStartByID(ctx, e, inst.ID, op.ID, map[string]string{store.OpRestart: store.StatusRestarting}); err != nil || !locked || started != nil {
				t.Errorf("TryLockStartByID behind the backlog: locked %v, started %v, %v; want the lock and no start", locked, started, err)
			}
			// Its lock is the session's, beyond the transaction.
			_, err = e.Tx.ExecContext(ctx, `SELECT pg_advisory_unlock_all()`)
			must(err)
			_, err = store.HasUnfinishedOperation(ctx, e, inst.ID)
			must(err)
			pending, err := store.PendingOperationsOf(ctx, e, inst.ID)
			must(err)
			if len(pending) != waiting/instances+2 {
				t.Errorf("PendingOperationsOf: %d, want %d", len(pending), waiting/instances+2)
			}
			started, on, seen, err := store.StartShowingOperation(ctx, e, op, store.StatusRestarting)
			must(err)
			done := started.Ended(nil, seen.Now())
			next, _, after, err := store.FinishSeen(ctx, e, done, seen, store.Rendered{Instance: on.WithStatus(store.StatusRunning, *done.FinishedAt),
				StatusChangeID: id.New(id.Event), Events: []store.QueuedEvent{{ID: id.New(id.Event), Type: "operation.succeeded", Payload: []byte("{}")}}})
			must(err)
			// The next of the instance's backlog, handed over.
			_, _, _, err = store.StartSeen(ctx, e, store.Operation{ID: next, AccountID: a.ID, InstanceID: op.InstanceID}, after,
				store.Rendered{Instance: on.WithStatus(store.StatusRestarting, after.Now()), StatusChangeID: id.New(id.Event)})
			must(err)
			_, err = store.StartOperation(ctx, e, op9.ID)
			must(err)
			_, _, _, err = store.FinishOperation(ctx, e, op9, nil)
			must(err)
			_, err = store.CancelOperation(ctx, e, a.ID, "op_wait8")
			must(err)
			_, err = store.SettledInstances(ctx, e, "", 100)
			must(err)
			// A webhook attempt.
			must(store.ClaimWebhookAttempt(ctx, e, "dlv_wait5", 0, time.Minute))
			code := 200
			must(store.RecordWebhookAttempt(ctx, e, "dlv_wait5", store.AttemptOutcome{Attempt: 1, StatusCode: &code, Status: store.DeliverySucceeded}))
			must(store.FailWebhookDelivery(ctx, e, "dlv_wait6", "endpoint disabled"))
			for _, p := range e.plans {
				if p.rows > most {
					t.Errorf("%.0f rows read (indexes %v) by\n%s", p.rows, p.indexes, p.query)
				}
			}

			// The relays' scans keep their indexes.
			e.plans = nil
			ops, err := store.UnfinishedOperations(ctx, e, 0, 100)
			must(err)
			dues, err := store.DueWebhookDeliveries(ctx, e, 0, 100)
			must(err)
			if len(ops) != 100 || len(dues) != 100 {
				t.Errorf("the relays read %d operations and %d deliveries, want 100 each", len(ops), len(dues))
			}
			for i, want := range []string{"operations_unfinished", "webhook_deliveries_pending"} {
				if p := e.plans[i]; !contains(p.indexes, want) {
					t.Errorf("%s not used (indexes %v) by\n%s", want, p.indexes, p.query)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestPartialIndexesOfUnfinishedRowsAreGuarded: a partial index of pending
// rows that any statement may use is what TestStatementsDoNotReadTheBacklog
// catches only for the statements it knows. Every such index carries a
// guard that only its own queries imply (migration 00012).
func TestPartialIndexesOfUnfinishedRowsAreGuarded(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	var preds []struct {
		Name string `db:"name"`
		Pred string `db:"pred"`
	}
	err := st.DB.SelectContext(context.Background(), &preds, `SELECT c.relname AS name, pg_get_expr(x.indpred, x.indrelid) AS pred
		FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
		WHERE x.indpred IS NOT NULL AND x.indrelid::regclass::text IN ('operations', 'webhook_deliveries')`)
	if err != nil {
		t.Fatal(err)
	}
	var unfinished int
	for _, p := range preds {
		if !strings.Contains(p.Pred, "'pending'") || strings.Contains(p.Pred, "<> 'pending'") {
			continue // an index of finished rows: statistics never make it look empty while it is full
		}
		unfinished++
		if !strings.Contains(p.Pred, "(seq > 0)") && !strings.Contains(p.Pred, "IS NOT NULL") {
			t.Errorf("%s: WHERE %s has no guard", p.Name, p.Pred)
		}
	}
	if unfinished != 3 {
		t.Errorf("%d partial indexes of unfinished rows, want the 4 of migration 00012 less the one 00013 dropped", unfinished)
	}
}
