package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/id"
)

// limitedRole creates a Postgres login role with every right on the
// System's tables and answers a database URL that connects as it. Unlike
// the superuser the tests use, such a role is subject to a CONNECTION
// LIMIT, so a test can make Postgres itself refuse new connections (53300,
// as a server whose max_connections is used up does) without touching
// the server other tests share. The role goes when the test ends.
func limitedRole(t *testing.T, sys *System) (name, dbURL string) {
	t.Helper()
	ctx := context.Background()
	name = strings.ToLower("mocd_limited_" + id.New("r")[2:14])
	db := sys.Store.DB
	for _, q := range []string{
		`CREATE ROLE ` + pq.QuoteIdentifier(name) + ` LOGIN`,
		`GRANT ALL ON ALL TABLES IN SCHEMA public TO ` + pq.QuoteIdentifier(name),
		`GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ` + pq.QuoteIdentifier(name),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		// Runs after the processes that connect as the role are gone
		// (their cleanups were registered later).
		_, _ = db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, name)
		for _, q := range []string{`DROP OWNED BY ` + pq.QuoteIdentifier(name), `DROP ROLE ` + pq.QuoteIdentifier(name)} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	u, err := url.Parse(sys.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(name)
	return name, u.String()
}

// TestAPIAnswers503WhenPostgresRefusesConnections: two `mocd api`
// processes race for connections that Postgres will not give (as when the
// soak's five processes and other tests filled the server's 100 slots:
// one 600-call soak got a 500 on a stop). Every refused request must be a
// 503 database_unavailable with Retry-After, as the contract's error
// shape says, never a 500; nothing is stored under its Idempotency-Key, so
// once Postgres takes connections again each retry is accepted once.
func TestAPIAnswers503WhenPostgresRefusesConnections(t *testing.T) {
	t.Parallel()
	bin := buildMocd(t)
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "business")
	const n = 8
	var insts []string
	for i := range n {
		op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": fmt.Sprintf("refused-%d", i)})
		insts = append(insts, op.InstanceID)
	}
	sys.StopWorker() // the operations need not run: what matters is what the apis answer

	role, roleURL := limitedRole(t, sys)
	apis := []string{
		startAPIProcess(t, sys, bin, "DATABASE_URL="+roleURL),
		startAPIProcess(t, sys, bin, "DATABASE_URL="+roleURL),
	}
	ctx := context.Background()
	// From now on Postgres refuses every new connection of the role, and
	// the connections the apis hold are cut (an administrator's
	// pg_terminate_backend, or a restart of Postgres, does the same).
	for _, q := range []string{
		`ALTER ROLE ` + pq.QuoteIdentifier(role) + ` CONNECTION LIMIT 0`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '` + role + `'`,
	} {
		if _, err := sys.Store.DB.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	stop := func(i int) (*http.Request, *Response, error) {
		path := "/api/v1/instances/" + insts[i] + "/stop"
		req, err := http.NewRequest(http.MethodPost, apis[i%2]+path, bytes.NewReader(nil))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Idempotency-Key", "refused-stop-"+insts[i])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return req, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return req, &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
	}
	type answer struct {
		req  *http.Request
		resp *Response
		err  error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, resp, err := stop(i)
			answers[i] = answer{req, resp, err}
		})
	}
	wg.Wait()
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("stop %d: %v", i, a.err)
		}
		checkContract(t, a.req, a.resp)
		var e struct{ Code string }
		a.resp.JSON(t, &e)
		if a.resp.Status != http.StatusServiceUnavailable || e.Code != "database_unavailable" || a.resp.Header.Get("Retry-After") == "" {
			t.Errorf("stop %d with no connection to be had: %d %s (Retry-After %q), want 503 database_unavailable with Retry-After",
				i, a.resp.Status, a.resp.Body, a.resp.Header.Get("Retry-After"))
		}
	}

	// Postgres takes connections again: each retry, same key, is accepted
	// once, and no stop was left behind by the refused attempts.
	if _, err := sys.Store.DB.ExecContext(ctx, `ALTER ROLE `+pq.QuoteIdentifier(role)+` CONNECTION LIMIT -1`); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		_, resp, err := stop(i)
		// A connection an api still pools from before may be found cut
		// only now: a client honours Retry-After, so does this one.
		for try := 0; err == nil && resp.Status == http.StatusServiceUnavailable && try < 3; try++ {
			time.Sleep(time.Second)
			_, resp, err = stop(i)
		}
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != http.StatusAccepted || resp.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("retried stop %d: %d %s (replayed %q), want a fresh 202", i, resp.Status, resp.Body, resp.Header.Get("Idempotent-Replayed"))
		}
		if got := countOps(t, sys, insts[i], "instance.stop"); got != 1 {
			t.Errorf("instance %d has %d stop operations, want 1", i, got)
		}
	}
}
