package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// BenchmarkAuditInChange measures what the audit entry costs a change: the
// transaction of POST /api/v1/keys (insert the key, commit) without an
// entry, with the entry inside the same transaction (what api.change
// does), and with the entry committed on its own afterwards (the
// alternative that could lose it, and pays a second commit). Each
// iteration runs all three; the figures are their medians.
//
//	go test -run '^$' -bench AuditInChange -benchtime 3000x ./store/
func BenchmarkAuditInChange(b *testing.B) {
	st := testenv.Store(b)
	ctx := context.Background()
	acct, err := store.CreateAccount(ctx, st.DB, "bench@example.com", "business")
	if err != nil {
		b.Fatal(err)
	}
	insertKey := func(db sqlx.ExtContext) error {
		_, err := store.InsertKey(ctx, db, store.Key{
			ID: id.New(id.Key), AccountID: acct.ID, Name: "bench", Prefix: "moc_x",
			SecretHash: make([]byte, 32), Scopes: []string{"keys:read"},
		})
		return err
	}
	entry := store.AuditEntry{
		AccountID: acct.ID, KeyID: "key_bench", KeyName: "bench", Method: "POST", Path: "/api/v1/keys",
		Status: 201, ClientIP: "203.0.113.7", RequestID: "req_bench",
	}
	variants := []struct {
		name string
		run  func() error
	}{
		{"without-audit", func() error {
			return st.WithTx(ctx, func(tx *sqlx.Tx) error { return insertKey(tx) })
		}},
		{"audit-in-tx", func() error {
			return st.WithTx(ctx, func(tx *sqlx.Tx) error {
				if err := insertKey(tx); err != nil {
					return err
				}
				return store.InsertAudit(ctx, tx, entry, nil)
			})
		}},
		{"audit-apart", func() error {
			if err := st.WithTx(ctx, func(tx *sqlx.Tx) error { return insertKey(tx) }); err != nil {
				return err
			}
			return store.InsertAudit(ctx, st.DB, entry, nil)
		}},
	}
	// The variants take turns, so that a load change on a shared machine
	// weighs on all three alike; medians resist its spikes.
	took := make([][]time.Duration, len(variants))
	i := 0
	for b.Loop() {
		for j := range variants {
			v := (i + j) % len(variants)
			start := time.Now()
			if err := variants[v].run(); err != nil {
				b.Fatal(err)
			}
			took[v] = append(took[v], time.Since(start))
		}
		i++
	}
	for v, d := range took {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), variants[v].name+"-median-µs")
	}
}
