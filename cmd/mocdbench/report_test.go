package main

import (
	"strings"
	"testing"
	"time"
)

// filledReport is a report of every part, as a run that measured
// everything would fill it.
func filledReport() reportData {
	return reportData{
		Machine: machine{Date: time.Date(2026, 11, 30, 19, 53, 0, 0, time.UTC), Commit: "35c4dd116166", CPU: "AMD EPYC", Cores: 2,
			Memory: "23.5 GiB", GoVersion: "go1.26.8", Postgres: "15.20", Redis: "7.0.15", Pgbench: "pgbench 15.20",
			LoadBefore: "7.44 7.92 9.06", LoadAfter: "11.41 9.26 9.35"},
		RunTime: 188 * time.Second,
		Clients: 16, Accounts: 48, AccountsPerClient: 3, KeysPerAccount: 3, InstancesPerAccount: 3,
		ScaleOps: 1000000, PageUnits: 1200, CountUnits: 100, CountE2E: 30, PgbenchSeconds: 7,
		Warmup: time.Second, Duration: 5 * time.Second, PollEvery: 20 * time.Millisecond, OutDir: "bench/out",
		Targets: []target{{Name: "poll ≥ 0.2× bare Gin", Before: "0.13× Gin", Now: "0.149× Gin (target 0.200×)"},
			{Name: "no new errors", Before: "0", Now: "yes", Met: true}},
		Rows: []row{{Name: scPoll, Rate: "1815 req/s", P50: "6.72 ms", P99: "55.7 ms", Errors: "2", Limited: "0",
			Ratio: "0.15× Gin, 0.43× pgbench", APIPG: "2.01", APIRedis: "1.00", WorkerPG: "–", WorkerRedis: "–"}},
		Refs:   []row{{Name: "bare Gin, constant answer", Rate: "12145 req/s", P50: "0.84 ms", P99: "8.56 ms"}},
		Errors: []scenarioErrors{{Name: scPoll, Errors: 2, First: "status 503"}},
		E2E: &result{Units: 64, Requests: 826, Server: []time.Duration{359 * time.Millisecond},
			Queued: []time.Duration{199 * time.Millisecond}},
		E2EWait: &result{Units: 190, Requests: 380, Server: []time.Duration{189 * time.Millisecond},
			Queued: []time.Duration{136 * time.Millisecond}},
		Walk:   &result{Units: 999, Latencies: []time.Duration{3250 * time.Microsecond}},
		Drain:  &drainNote{Backlog: 124, Done: 124, Elapsed: 2600 * time.Millisecond, Rate: "48"},
		CPU:    []cpuRow{{Name: "bare Gin", API: "0.035 ms (Gin)", Harness: "0.045 ms", Others: "0.080 ms", Busy: "98%"}},
		Memory: "api 41 MiB, worker 33 MiB",
		Idle:   &idleNote{APIPG: "0.0", APIRedis: "0.0", WorkerPG: "2.0", WorkerRedis: "58.7"},
		Counts: []countSection{{Name: scE2E, Unit: "operation", N: 30, RequestsPerOp: "2.1",
			Proxies: []proxyCount{{Proxy: "worker-redis", RoundTrips: "4.67", Names: "1.00 `PING`"}}}},
		Profiles: []profileNote{
			{Name: scAccept, Process: "api", Rate: "223 req/s", Path: "bench/out/api-accept.pprof", Syscalls: "41.2%", Alloc: "10.1%", Total: 1990 * time.Millisecond,
				ByLibrary: []share{{"Postgres client (lib/pq, database/sql, sqlx)", "43.2%"}},
				ByMocd:    []share{{"store.GetPrincipal", "4.0%"}}, Flat: []share{{"runtime.futex", "7.5%"}}},
			{Name: scPoll, Process: "api", Err: "no debug listener"},
			{Name: scE2EWait, Process: "worker", Err: "no debug listener"},
		},
		Scripts: []scriptNote{{Path: "bench/accept.sql", Src: "BEGIN;\nCOMMIT;\n", Scenario: scAccept, Statements: 2, Sent: "2.00"}},
	}
}

// The report's sections, in order.
var sections = []string{
	"# Benchmarks\n",
	"\n## Targets of issue 18\n",
	"\n## Results\n",
	"\n## Where the CPU went\n",
	"\n## Round trips per request\n",
	"\n## CPU profile of the api: accept\n",
	"\n## CPU profile of the api: poll\n",
	"\n## The pgbench script\n",
	"\n## Method\n",
}

func TestReport(t *testing.T) {
	t.Run("every section in order, with its figures", func(t *testing.T) {
		doc, err := render("report", filledReport())
		if err != nil {
			t.Fatal(err)
		}
		at := 0
		for _, s := range sections {
			i := strings.Index(doc[at:], s)
			if i < 0 {
				t.Fatalf("no %q after offset %d:\n%s", s, at, doc)
			}
			at += i + len(s)
		}
		for _, want := range []string{
			"| date | 2026-11-30 19:53 UTC |",
			"| run time | 3m8s for this run",
			"1s warm-up + 5s measured per scenario",
			"| 48 business accounts", // the data row
			"| poll ≥ 0.2× bare Gin | 0.13× Gin | 0.149× Gin (target 0.200×) | **not met** |",
			"| no new errors | 0 | yes | met |",
			"| poll | 1815 req/s | 6.72 ms | 55.7 ms | 2 | 0 | 0.15× Gin, 0.43× pgbench | 2.01 | 1.00 | – | – |",
			"| bare Gin, constant answer | 12145 req/s | 0.84 ms | 8.56 ms |",
			"- **poll**: 2 errors, the first: status 503\n",
			"then the next; 64 operations,\n  12.9 HTTP requests per operation.",
			"(finished_at − created_at): p50 359 ms, p99 359 ms; of which queued",
			"server recorded it: p50 189 ms, p99 189 ms; queued p50 136 ms, p99 136 ms.\n",
			"The walk, one client: 999 requests, p50 3.25 ms, p99 3.25 ms.",
			"finished 124 of them in 2.6s (48 ops/s with a full queue).\n",
			"| bare Gin | 0.035 ms (Gin) | – | – | – | – | – | 0.045 ms | 0.080 ms | 98% |",
			"timed scenario): api 41 MiB, worker 33 MiB. mocd collects garbage at GOGC=400",
			"worker 2.0 PG / 58.7 Redis round trips.",
			"**end-to-end** (30 operations, 2.1 HTTP requests each)\n\n| per operation |",
			"| worker-redis | 4.67 | 1.00 `PING` |",
			"1.99s of samples over 5s of load (223 req/s while profiled); `bench/out/api-accept.pprof`.",
			"shares add up to 100%.",
			"| Postgres client (lib/pq, database/sql, sqlx) | 43.2% |",
			"| `store.GetPrincipal` | 4.0% |",
			"| `runtime.futex` | 7.5% |",
			"## CPU profile of the api: poll\n\nNot taken: no debug listener\n\n## CPU profile of the worker: end-to-end with wait\n\nNot taken: no debug listener\n\n## The pgbench script",
			"`pgbench -n -M extended -c 16 -j 2 -T 7 -f bench/accept.sql -l`",
			"```sql\nBEGIN;\nCOMMIT;\n```\n\nIt has 2 statements; in the counting pass the api sent 2.00 per accept request",
			"The profiles are in `bench/out/` (`go tool pprof -http : bench/out/api-accept.pprof`).\n",
		} {
			if !strings.Contains(doc, want) {
				t.Errorf("no %q in:\n%s", want, doc)
			}
		}
		if strings.Contains(doc, "<no value>") {
			t.Errorf("a value missing:\n%s", doc)
		}
	})

	t.Run("parts not measured are left out", func(t *testing.T) {
		d := filledReport()
		d.E2E, d.E2EWait, d.Walk, d.Drain, d.Counts, d.Profiles = nil, nil, nil, nil, nil, nil
		doc, err := render("report", d)
		if err != nil {
			t.Fatal(err)
		}
		for _, gone := range []string{"**end-to-end**", "**scale**", "**accept backlog**", "## Round trips per request", "## CPU profile"} {
			if strings.Contains(doc, gone) {
				t.Errorf("%q in a report without it:\n%s", gone, doc)
			}
		}
		if !strings.Contains(doc, "with full allowances; any 429 would be counted in its column.\n\n## Where the CPU went") {
			t.Errorf("the notes do not end where the CPU section starts:\n%s", doc)
		}
	})

	t.Run("a key the data lacks is an error", func(t *testing.T) {
		// Data given as a map: without missingkey=error, each missing
		// key would render as "<no value>" and the test could not tell.
		if doc, err := render("report", map[string]any{"Machine": machine{}}); err == nil {
			t.Errorf("rendered without RunTime, Targets and the rest:\n%s", doc)
		}
		if doc, err := render("targets", []map[string]any{{"Name": "poll", "Met": true}}); err == nil {
			t.Errorf("rendered a target without Before and Now:\n%s", doc)
		}
	})

	t.Run("a field the data lacks is an error", func(t *testing.T) {
		type older struct{ Machine machine }
		if doc, err := render("report", older{}); err == nil {
			t.Errorf("rendered a struct without RunTime:\n%s", doc)
		}
	})
}

// TestReferencesPoolBothPasses: a reference's figure is its two passes
// together, each pass listed beside it; a failed pass is left out.
func TestReferencesPoolBothPasses(t *testing.T) {
	pass := func(pgb, gin int, pgbErr string) refResults {
		return refResults{
			pgbench: []pgbenchRun{{variant: pgbenchVariants[0], err: pgbErr,
				res: result{Units: pgb, Elapsed: time.Second, Latencies: []time.Duration{time.Millisecond}}}},
			gin: result{Units: gin, Elapsed: time.Second},
		}
	}
	b := &bench{refPasses: [2]refResults{pass(1000, 500, ""), pass(2000, 700, "")}}
	b.refs = b.refPasses[0].merged(b.refPasses[1])
	if got := b.pgbenchTPS(pgbenchScript); got != 1500 {
		t.Errorf("pgbench: %.0f tx/s, want 1500 (both passes)", got)
	}
	if got := b.refs.gin.PerSec(); got != 600 {
		t.Errorf("gin: %.0f req/s, want 600", got)
	}
	if b.refPasses[0].pgbench[0].res.Units != 1000 {
		t.Error("merging changed the first pass")
	}
	rows := b.refRows()
	if rows[0].Rate != "1500 tx/s" || rows[0].Passes != "1000 / 2000" {
		t.Errorf("pgbench row %+v", rows[0])
	}
	if last := rows[len(rows)-1]; last.Passes != "500 / 700" {
		t.Errorf("gin row %+v", last)
	}

	b.refPasses[1] = pass(0, 700, "pgbench: connection refused")
	b.refs = b.refPasses[0].merged(b.refPasses[1])
	if got := b.pgbenchTPS(pgbenchScript); got != 1000 {
		t.Errorf("pgbench with a failed second pass: %.0f tx/s, want the first pass's 1000", got)
	}
	if rows := b.refRows(); rows[0].Passes != "1000 / –" {
		t.Errorf("pgbench row with a failed pass %+v", rows[0])
	}
}
