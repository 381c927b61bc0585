package main

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
	"time"

	_ "github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/myopenclaw/mocd/internal/wirecount"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// The counting proxies are what the report's round-trip columns rest on:
// these tests drive real Postgres and Redis through them and check that a
// round trip and a statement are counted exactly once.

func TestPostgresCounter(t *testing.T) {
	dbURL := testenv.DatabaseURL(t)
	target, err := hostPort(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wirecount.Start(wirecount.Postgres, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	proxied, err := withHost(dbURL, w.Addr())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(proxied)
	q := u.Query()
	q.Set("binary_parameters", "yes") // as store.Open connects
	u.RawQuery = q.Encode()
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}

	before := w.Snapshot()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("query through the proxy: %d, %v", n, err)
	}
	got := w.Snapshot().Sub(before)
	if got.RoundTrips != 1 || got.ByName["SELECT $1::int + 1"] != 1 || got.Statements() != 1 {
		t.Errorf("one parameterised query: %+v, want 1 round trip and 1 statement", got)
	}

	before = w.Snapshot()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT\n   $1::text", "x"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	got = w.Snapshot().Sub(before)
	if got.RoundTrips != 3 || got.Statements() != 3 || got.ByName["COMMIT"] != 1 || got.ByName["SELECT $1::text"] != 1 {
		t.Errorf("BEGIN, a statement, COMMIT: %+v, want 3 round trips and 3 statements", got)
	}

	// mocd's own connections keep statements prepared: the first run
	// prepares (a round trip of its own), every run binds it by name.
	st, err := store.Open(ctx, proxied)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	st.DB.SetMaxOpenConns(1)
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	before = w.Snapshot()
	for range 3 {
		if err := st.DB.QueryRowContext(ctx, "SELECT $1::int * 2", 21).Scan(&n); err != nil || n != 42 {
			t.Fatalf("prepared query through the proxy: %d, %v", n, err)
		}
	}
	got = w.Snapshot().Sub(before)
	if got.RoundTrips != 4 || got.ByName["SELECT $1::int * 2"] != 3 || got.Statements() != 3 {
		t.Errorf("a prepared statement run 3 times: %+v, want 4 round trips (one to prepare) and 3 statements", got)
	}
}

func TestRedisCounter(t *testing.T) {
	r := testenv.StartRedis(t)
	w, err := wirecount.Start(wirecount.Redis, r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	c := redis.NewClient(&redis.Options{Addr: w.Addr(), PoolSize: 1})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	before := w.Snapshot()
	if err := c.Set(ctx, "k", "a value\r\nwith CRLF", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "a value\r\nwith CRLF" {
		t.Fatalf("GET through the proxy: %q, %v", v, err)
	}
	got := w.Snapshot().Sub(before)
	if got.RoundTrips != 2 || got.ByName["SET"] != 1 || got.ByName["GET"] != 1 {
		t.Errorf("SET then GET: %+v, want 2 round trips", got)
	}

	pipeline := func() {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "n")
			p.Incr(ctx, "n")
			p.Get(ctx, "n")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pipeline() // go-redis may open a connection of its own for pipelines
	before = w.Snapshot()
	pipeline()
	got = w.Snapshot().Sub(before)
	if got.RoundTrips != 1 || got.ByName["INCR"] != 2 || got.Statements() != 3 {
		t.Errorf("a pipeline of three: %+v, want 1 round trip and 3 commands", got)
	}

	before = w.Snapshot()
	s := redis.NewScript(`return redis.call('GET', KEYS[1])`)
	if err := s.Run(ctx, c, []string{"moc:rl:{acct_X1}:key:key_Y2:m"}).Err(); err != nil && err != redis.Nil {
		t.Fatal(err)
	}
	got = w.Snapshot().Sub(before)
	// go-redis tries EVALSHA, gets NOSCRIPT, then sends EVAL.
	if got.ByName["EVALSHA (moc:rl:…)"] != 1 || got.ByName["EVAL (moc:rl:…)"] != 1 {
		t.Errorf("a script: %+v, want EVALSHA then EVAL named by their key", got)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestParseTraces(t *testing.T) {
	out := []byte(`File: mocdbench
Type: cpu
Duration: 3.11s, Total samples = 960ms (30.84%)
-----------+-------------------------------------------------------
      10ms   internal/runtime/syscall/linux.Syscall6
             net.(*conn).Write
             github.com/lib/pq.(*conn).send
             github.com/myopenclaw/mocd/store.GetPrincipal
             net/http.(*conn).serve
-----------+-------------------------------------------------------
     1.20s   runtime.gcBgMarkWorker
-----------+-------------------------------------------------------
`)
	stacks, err := parseTraces(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(stacks) != 2 || stacks[0].value != 10*time.Millisecond || len(stacks[0].frames) != 5 || stacks[1].value != 1200*time.Millisecond {
		t.Fatalf("parsed %+v", stacks)
	}
	if lib := libraryOf(stacks[0].frames); lib != "Postgres client (lib/pq, database/sql, sqlx)" {
		t.Errorf("a socket write by lib/pq is charged to %q", lib)
	}
	if lib := libraryOf(stacks[1].frames); lib != "garbage collection (background)" {
		t.Errorf("the GC worker is charged to %q", lib)
	}
}
