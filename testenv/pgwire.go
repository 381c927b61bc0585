package testenv

import (
	"net/url"
	"testing"

	"github.com/myopenclaw/mocd/internal/wirecount"
)

// PGCounter is a TCP proxy between a test's client and Postgres that
// counts what the client sends: statements executed (a simple Query, a
// one-shot unnamed Parse, or a Bind of a prepared statement: a statement
// reused from a cache counts each time it runs) and round trips (each time
// the client speaks after the server did). It is how a test proves a path
// costs N statements, without pg_stat_statements (which needs a server
// restart to load). It is the load harness's counter (internal/wirecount).
type PGCounter struct {
	// URL is the database URL through the proxy.
	URL string
	w   *wirecount.Counter
}

// CountPostgres starts a proxy to the database at dbURL (sslmode=disable)
// and stops it when the test ends.
func CountPostgres(t testing.TB, dbURL string) *PGCounter {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wirecount.Start(wirecount.Postgres, u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	u.Host = w.Addr()
	return &PGCounter{URL: u.String(), w: w}
}

// Counts answers the statements and round trips seen so far.
func (p *PGCounter) Counts() (statements, roundTrips int64) {
	c := p.w.Snapshot()
	return c.Statements(), c.RoundTrips
}
