package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// preparedOn lists the statements prepared on the connection that runs
// the query (pg_prepared_statements is per session).
func preparedOn(t *testing.T, ctx context.Context, st *store.Store) map[string]bool {
	t.Helper()
	conn, err := st.DB.Connx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var stmts []string
	if err := conn.SelectContext(ctx, &stmts, `SELECT statement FROM pg_prepared_statements`); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range stmts {
		out[s] = true
	}
	return out
}

// TestPreparedStatements checks that a parameterised statement is prepared
// once per connection and reused, within transactions too, that one
// without parameters (which may hold several statements) is not, and that
// a statement whose plan the schema invalidated is prepared afresh rather
// than failing every later call.
func TestPreparedStatements(t *testing.T) {
	ctx := context.Background()
	st := testenv.Store(t)
	st.DB.SetMaxOpenConns(1) // one connection: what it prepared is visible

	const q = `SELECT count(*) FROM accounts WHERE id <> $1`
	var n int
	for i := range 3 {
		if err := st.DB.GetContext(ctx, &n, q, fmt.Sprint("acct_", i)); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := st.DB.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.GetContext(ctx, &n, q, "acct_tx"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, `SELECT 1; SELECT 2`); err != nil {
		t.Fatalf("several statements without parameters: %v", err)
	}
	got := preparedOn(t, ctx, st)
	if !got[q] {
		t.Errorf("%q is not prepared; prepared: %v", q, got)
	}
	if len(got) != 1 {
		t.Errorf("prepared statements = %v, want only %q (once, reused)", got, q)
	}

	// A prepared SELECT * changes its result type when a column is added:
	// Postgres refuses the cached plan once (0A000); the next call must
	// work again.
	const star = `SELECT * FROM accounts WHERE id = $1`
	run := func() error {
		rows, err := st.DB.QueryContext(ctx, star, "acct_none")
		if err != nil {
			return err
		}
		for rows.Next() {
		}
		rows.Close()
		return rows.Err()
	}
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, `ALTER TABLE accounts ADD COLUMN stmtcache_probe int`); err != nil {
		t.Fatal(err)
	}
	_ = run() // may fail once
	if err := run(); err != nil {
		t.Fatalf("after a schema change, the statement still fails: %v", err)
	}
}

// TestClaimLeavesSynchronousCommitOn: the Idempotency-Key claim commits
// without waiting for its WAL flush, but only its own transaction: the
// next statement on the same connection (a change's transaction, whose
// synchronous commit is what makes the lost-claim case harmless) commits
// synchronously again.
func TestClaimLeavesSynchronousCommitOn(t *testing.T) {
	ctx := context.Background()
	st := testenv.Store(t)
	st.DB.SetMaxOpenConns(1)
	a, err := store.CreateAccount(ctx, st.DB, "claim@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.InsertKey(ctx, st.DB, store.Key{ID: "key_claim", AccountID: a.ID, Name: "ci",
		Prefix: "moc_key_claim", SecretHash: make([]byte, 32), Scopes: []string{"keys:write"}}); err != nil {
		t.Fatal(err)
	}
	cl, err := store.ClaimIdempotencyKey(ctx, st.DB, a.ID, "key_claim", "k1", "POST", "/api/v1/keys", []byte{1}, time.Minute)
	if err != nil || !cl.Claimed {
		t.Fatalf("claim: %+v %v", cl, err)
	}
	var setting string
	if err := st.DB.GetContext(ctx, &setting, `SHOW synchronous_commit`); err != nil {
		t.Fatal(err)
	}
	if setting != "on" {
		t.Fatalf("synchronous_commit after the claim = %q, want on", setting)
	}
	again, err := store.ClaimIdempotencyKey(ctx, st.DB, a.ID, "key_claim", "k1", "POST", "/api/v1/keys", []byte{1}, time.Minute)
	if err != nil || again.Claimed || again.Existing == nil {
		t.Fatalf("second claim of a committed claim: %+v %v", again, err)
	}
}
