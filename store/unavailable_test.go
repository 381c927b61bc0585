package store_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"testing"

	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// TestUnavailable: what Postgres answers when it cannot take a call is told
// apart from what it answers when it refuses the call itself. The real
// errors come from a real server (a dial to a port nothing listens on, a
// bad statement, a lookup of nothing); the codes lib/pq reports during a
// connection's startup are named by their SQLSTATE, as the server sends
// them (the e2e test TestAPIAnswers503WhenPostgresRefusesConnections
// meets a real 53300).
func TestUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)

	_, dialErr := store.Open(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
	_, syntaxErr := st.DB.ExecContext(ctx, `SELEC 1`)
	_, notFound := store.GetOperation(ctx, st.DB, "acct_none", "op_none")
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"dial refused (Postgres down)", dialErr, true},
		{"too many clients", &pq.Error{Code: "53300"}, true},
		{"out of memory", &pq.Error{Code: "53200"}, true},
		{"connection failure", &pq.Error{Code: "08006"}, true},
		{"terminated by an administrator", &pq.Error{Code: "57P01"}, true},
		{"the server is starting", &pq.Error{Code: "57P03"}, true},
		{"a broken connection, wrapped", fmt.Errorf("begin: %w", driver.ErrBadConn), true},
		{"a syntax error", syntaxErr, false},
		{"a unique violation", &pq.Error{Code: "23505"}, false},
		{"a statement cancelled", &pq.Error{Code: "57014"}, false},
		{"not found", notFound, false},
		{"nil", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil && c.name != "nil" {
				t.Fatal("the call meant to fail succeeded")
			}
			if got := store.Unavailable(c.err); got != c.want {
				t.Errorf("Unavailable(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}
