package api_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// BenchmarkDeepPaging seeds one account with one million operations and
// one million audit entries (MOC_BENCH_ROWS overrides the count) and
// times the first page, page 1,000 and the last page of GET
// /api/v1/operations and GET /api/v1/logs, through the whole middleware
// chain and, separately, as the store query alone. Keyset paging walks the
// (account_id, seq DESC) index from the cursor, so every page costs the
// same; the benchmark fails if Postgres plans the deep pages with anything
// but that index (the plans are captured with auto_explain from the very
// queries the store sends).
//
//	go test -run '^$' -bench DeepPaging -benchtime 2000x ./api/
//
// It is a benchmark so that the seeding (about half a minute) stays out of
// `go test ./...`.
func BenchmarkDeepPaging(b *testing.B) {
	rows := 1_000_000
	if v := os.Getenv("MOC_BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 200_000 {
			b.Fatalf("MOC_BENCH_ROWS=%q: want at least 200000", v)
		}
		rows = n
	}
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(b)
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	e := startAPIOn(b, st, testenv.StartRedis(b))
	acct, tok := e.account("business", apikey.PresetFull)
	kid, _, _ := apikey.Parse(tok)

	start := time.Now()
	seedMillion(b, st.DB, acct, kid, rows)
	b.Logf("seeded %d operations and %d audit entries in %v", rows, rows, time.Since(start).Round(time.Millisecond))

	// Cursors as the api hands them out: page 1,000 starts below the
	// 49,950th newest row; the last page below the 51st oldest.
	const limit = 50
	var opsMin, opsMax int64
	if err := st.DB.QueryRowContext(ctx, `SELECT min(seq), max(seq) FROM operations WHERE account_id = $1`, acct).Scan(&opsMin, &opsMax); err != nil {
		b.Fatal(err)
	}
	logAt := func(order string, offset int) store.AuditPosition {
		var p store.AuditPosition
		q := `SELECT created_at, seq FROM audit_log WHERE account_id = $1 ORDER BY created_at ` + order + `, seq ` + order + ` OFFSET $2 LIMIT 1`
		if err := st.DB.QueryRowContext(ctx, q, acct, offset).Scan(&p.CreatedAt, &p.Seq); err != nil {
			b.Fatal(err)
		}
		return p
	}
	logPage1000, logLast := logAt("DESC", limit*999-1), logAt("ASC", limit)
	// A time range far back: the hour that ends where 90% of the log is
	// newer.
	farBack := logAt("DESC", rows*9/10).CreatedAt
	farRange := store.AuditFilter{From: farBack.Add(-time.Hour), To: farBack}
	farQuery := "&from=" + url.QueryEscape(farRange.From.Format(time.RFC3339Nano)) + "&to=" + url.QueryEscape(farRange.To.Format(time.RFC3339Nano))

	// The scopes the handlers seal their cursors in (api/operations.go,
	// api/logs.go): a list's filters, and for operations the account.
	opsScope, logsScope := acct+"|ops|||||", "logs|"+acct+"|||"
	keyScope := "logs|" + acct + "|" + kid + "||"
	ops := func(before int64) func(db sqlx.ExtContext) (int, error) {
		return func(db sqlx.ExtContext) (int, error) {
			r, err := store.ListOperations(ctx, db, acct, store.OperationFilter{}, before, limit+1)
			return len(r), err
		}
	}
	logs := func(f store.AuditFilter, after store.AuditPosition) func(db sqlx.ExtContext) (int, error) {
		return func(db sqlx.ExtContext) (int, error) {
			r, err := store.ListAudit(ctx, db, acct, f, after, limit+1)
			return len(r), err
		}
	}
	opsCursor := func(seq int64) string {
		return "&cursor=" + url.QueryEscape(e.srv.SealCursor(opsScope, seq))
	}
	logCursor := func(scope string, p store.AuditPosition) string {
		return "&cursor=" + url.QueryEscape(e.srv.SealLogCursor(scope, p.CreatedAt, p.Seq))
	}
	none := store.AuditPosition{}
	cases := []pagingCase{
		{"operations/first", "/api/v1/operations?limit=50", ops(0)},
		{"operations/page-1000", "/api/v1/operations?limit=50" + opsCursor(opsMax-limit*999), ops(opsMax - limit*999)},
		{"operations/last", "/api/v1/operations?limit=50" + opsCursor(opsMin+limit), ops(opsMin + limit)},
		{"logs/first", "/api/v1/logs?limit=50", logs(store.AuditFilter{}, none)},
		{"logs/page-1000", "/api/v1/logs?limit=50" + logCursor(logsScope, logPage1000), logs(store.AuditFilter{}, logPage1000)},
		{"logs/last", "/api/v1/logs?limit=50" + logCursor(logsScope, logLast), logs(store.AuditFilter{}, logLast)},
		{"logs-by-key/first", "/api/v1/logs?limit=50&key_id=" + kid, logs(store.AuditFilter{KeyID: kid}, none)},
		{"logs-by-key/last", "/api/v1/logs?limit=50&key_id=" + kid + logCursor(keyScope, logLast), logs(store.AuditFilter{KeyID: kid}, logLast)},
		{"logs-hour-long-past/first", "/api/v1/logs?limit=50" + farQuery, logs(farRange, none)},
		{"logs-before-long-past/first", "/api/v1/logs?limit=50&to=" + url.QueryEscape(farBack.Format(time.RFC3339Nano)), logs(store.AuditFilter{To: farBack}, none)},
	}

	explainPages(b, dbURL, cases)

	// Every iteration serves every case, once through the whole api (auth,
	// rate limit, handler) and once as the store query alone, in turns, so
	// that the load of a shared machine weighs on all alike; the figures
	// are medians.
	h := e.srv.Handler()
	rc := e.redis.Client()
	took := make([][]time.Duration, 2*len(cases))
	i := 0
	for b.Loop() {
		// The limiter stays in the path; its buckets are emptied now and
		// then so that it never refuses.
		if i%50 == 0 {
			rc.FlushDB(ctx)
		}
		for j := range took {
			k := (i + j) % len(took)
			c := cases[k%len(cases)]
			start := time.Now()
			if k < len(cases) {
				req := httptest.NewRequest("GET", c.path, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"id":`) {
					b.Fatalf("%s: %d %s", c.path, w.Code, w.Body)
				}
			} else if n, err := c.list(st.DB); err != nil || n != limit+1 && n != limit {
				b.Fatalf("%s: %d rows, %v", c.name, n, err)
			}
			took[k] = append(took[k], time.Since(start))
		}
		i++
	}
	for k, d := range took {
		slices.Sort(d)
		kind := "http"
		if k >= len(cases) {
			kind = "store"
		}
		b.ReportMetric(float64(d[len(d)/2].Microseconds()), kind+":"+cases[k%len(cases)].name+"-µs")
	}
}

// pagingCase is one page of one list: its api path and its store query.
type pagingCase struct {
	name, path string
	list       func(db sqlx.ExtContext) (int, error)
}

// seedMillion writes n operations (over ten instances) and n audit entries
// for one account, one second apart, oldest first, then updates the
// planner's statistics as autovacuum would.
func seedMillion(b *testing.B, db *sqlx.DB, acct, kid string, n int) {
	b.Helper()
	ctx := context.Background()
	insts := make([]string, 10)
	for i := range insts {
		insts[i] = id.New(id.Instance)
		if _, err := store.InsertInstance(ctx, db, insts[i], acct, "bench-"+strings.ToLower(id.Random(10)), "iad", store.StatusRunning); err != nil {
			b.Fatal(err)
		}
	}
	const ops = `INSERT INTO operations (id, account_id, instance_id, type, status, created_at, started_at, finished_at)
		SELECT 'op_' || lpad(g::text, 20, '0'), $1, ($2::text[])[1 + g % 10], 'instance.restart', 'succeeded',
			t, t + interval '1 second', t + interval '9 seconds'
		FROM generate_series(1, $3::int) g, LATERAL (SELECT now() - ($3::int - g) * interval '1 second' AS t) x`
	const audit = `INSERT INTO audit_log (id, account_id, key_id, key_name, method, path, status, operation_id, client_ip, request_id, created_at)
		SELECT 'log_' || lpad(g::text, 20, '0'), $1, $2, 'bench', 'POST', '/api/v1/instances/inst_x/restart', 202,
			'op_' || lpad(g::text, 20, '0'), '203.0.113.7', 'req_' || g, now() - ($3::int - g) * interval '1 second'
		FROM generate_series(1, $3::int) g`
	for _, q := range []struct {
		sql  string
		args []any
	}{{ops, []any{acct, pq.Array(insts), n}}, {audit, []any{acct, kid, n}}} {
		t := time.Now()
		// The rows reference the account and instances just created, so
		// the per-row foreign-key triggers are skipped (replica role).
		err := func() error {
			tx, err := db.BeginTxx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%v: %s", time.Since(t).Round(time.Millisecond), strings.Fields(q.sql)[2])
	}
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE operations, audit_log`); err != nil {
		b.Fatal(err)
	}
}

// explainPages runs each case's store query once with auto_explain on
// and logs its plan, and fails unless the plan is an index scan (no
// sequential scan, no bitmap) that reads about as few buffers deep in the
// list, or far back in time, as on the first page: the buffers read are
// the cost that would grow with depth, whatever the plan's shape (with
// every row in one account the planner may as well walk audit_log_created
// and sort the one page it reads).
func explainPages(b *testing.B, dbURL string, cases []pagingCase) {
	b.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var plans []string
	// binary_parameters as store.Open sets it: the query is planned with
	// its parameters' values, as in production.
	u, err := url.Parse(dbURL)
	if err != nil {
		b.Fatal(err)
	}
	qs := u.Query()
	qs.Set("binary_parameters", "yes")
	u.RawQuery = qs.Encode()
	conn, err := pq.NewConnector(u.String())
	if err != nil {
		b.Fatal(err)
	}
	db := sqlx.NewDb(sql.OpenDB(pq.ConnectorWithNoticeHandler(conn, func(n *pq.Error) {
		mu.Lock()
		plans = append(plans, n.Message)
		mu.Unlock()
	})), "postgres")
	defer db.Close()
	db.SetMaxOpenConns(1) // the settings below belong to one session
	for _, s := range []string{
		`LOAD 'auto_explain'`, `SET auto_explain.log_min_duration = 0`, `SET auto_explain.log_analyze = on`,
		`SET auto_explain.log_buffers = on`, `SET client_min_messages = log`,
	} {
		if _, err := db.ExecContext(ctx, s); err != nil {
			b.Skipf("auto_explain unavailable (%v); cannot check the plans", err)
		}
	}
	buffers := regexp.MustCompile(`Buffers: shared (?:hit=(\d+))? ?(?:read=(\d+))?`)
	execTime := regexp.MustCompile(`Limit .*\(actual time=[0-9.]+\.\.([0-9.]+) `)
	first := map[string]int{}
	for _, c := range cases {
		mu.Lock()
		plans = nil
		mu.Unlock()
		if _, err := c.list(db); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		plan := strings.Join(plans, "\n")
		mu.Unlock()
		if !strings.Contains(plan, "Index Scan") || strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Bitmap") {
			b.Fatalf("%s is not a plain index scan:\n%s", c.name, plan)
		}
		m := buffers.FindStringSubmatch(plan)
		if m == nil {
			b.Fatalf("%s: no buffer counts in\n%s", c.name, plan)
		}
		hit, _ := strconv.Atoi(m[1])
		read, _ := strconv.Atoi(m[2])
		ms := ""
		if t := execTime.FindStringSubmatch(plan); t != nil {
			ms = t[1] + " ms"
		}
		b.Logf("%s: %d buffers, executed in %s\n%s", c.name, hit+read, ms, plan)
		// Every page of a table must cost about what its first page does.
		table := strings.FieldsFunc(c.name, func(r rune) bool { return r == '/' || r == '-' })[0]
		if _, ok := first[table]; !ok {
			first[table] = hit + read
		} else if hit+read > 2*first[table]+8 {
			b.Fatalf("%s reads %d buffers, the first page of %s %d: the cost grows with depth", c.name, hit+read, table, first[table])
		}
	}
}
