package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/myopenclaw/mocd/internal/wirecount"
)

// machine describes where and when the run happened.
type machine struct {
	date       time.Time
	commit     string
	cpu        string
	cores      int
	memory     string
	goVersion  string
	postgres   string
	redis      string
	pgbench    string
	loadBefore string
	loadAfter  string
}

func machineInfo(ctx context.Context) machine {
	m := machine{date: time.Now().UTC(), cores: runtime.NumCPU(), goVersion: runtime.Version(), loadBefore: loadAverage()}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.commit += " (with uncommitted changes)"
		}
	}
	m.cpu = firstField("/proc/cpuinfo", "model name")
	if mem := firstField("/proc/meminfo", "MemTotal"); mem != "" {
		var kb int64
		fmt.Sscanf(mem, "%d", &kb)
		m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if db, err := sql.Open("postgres", adminURL()); err == nil {
		db.QueryRowContext(ctx, `SHOW server_version`).Scan(&m.postgres)
		db.Close()
	}
	if out, err := exec.CommandContext(ctx, "redis-server", "--version").Output(); err == nil {
		m.redis = strings.TrimSpace(string(out))
		if f := strings.Fields(m.redis); len(f) >= 3 {
			m.redis = strings.TrimPrefix(f[2], "v=")
		}
	}
	if out, err := exec.CommandContext(ctx, "pgbench", "--version").Output(); err == nil {
		m.pgbench = strings.TrimSpace(string(out))
	}
	return m
}

func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// row is one line of the main table.
type row struct {
	name, rate, p50, p99, errors, limited, ratio, apiPG, apiRedis, workerPG, workerRedis string
}

func (b *bench) rows() []row {
	pgTPS := b.pgbenchTPS(pgbenchScript)
	pgPoll := b.pgbenchTPS(pgbenchPollScript)
	ginRPS := b.refs.gin.PerSec()
	asynqClosed := b.refs.asynqClosed.PerSec()
	var rows []row
	for _, name := range scenarioOrder {
		r, ok := b.timed[name]
		if !ok {
			continue
		}
		w := row{
			name:    name,
			rate:    fmt.Sprintf("%.0f req/s", r.PerSec()),
			p50:     ms(percentile(r.Latencies, 50)),
			p99:     ms(percentile(r.Latencies, 99)),
			errors:  fmt.Sprint(r.Errors),
			limited: fmt.Sprint(r.Limited),
		}
		switch name {
		case scAccept, scReplay:
			w.ratio = ratio(r.PerSec(), pgTPS) + " pgbench, " + ratio(r.PerSec(), ginRPS) + " Gin"
		case scAcceptAlone:
			w.ratio = ratio(r.PerSec(), b.pgbenchTPSMode(pgbenchScript, "prepared")) + " pgbench -M prepared, " + ratio(r.PerSec(), pgTPS) + " pgbench"
		case scPoll:
			w.ratio = ratio(r.PerSec(), ginRPS) + " Gin, " + ratio(r.PerSec(), pgPoll) + " pgbench"
		case scE2E, scE2EWait:
			w.rate = fmt.Sprintf("%.0f ops/s", r.PerSec())
			w.ratio = ratio(r.PerSec(), asynqClosed) + " Asynq (closed loop)"
		default:
			w.ratio = ratio(r.PerSec(), ginRPS) + " Gin"
		}
		counted := name
		if name == scAcceptAlone {
			counted = scAccept // the api sends the same statements
		}
		if c, ok := b.counted[counted]; ok {
			per := func(proxy string, byReq bool) string {
				n := c.Units
				if byReq {
					n = c.Requests
				}
				if n == 0 {
					return "–"
				}
				return fmt.Sprintf("%.2f", float64(c.Per[proxy].RoundTrips)/float64(n))
			}
			w.apiPG, w.apiRedis = per("api-pg", !isE2E(name)), per("api-redis", !isE2E(name))
			if name == scAcceptAlone {
				w.workerPG, w.workerRedis = "stopped", "stopped"
				rows = append(rows, w)
				continue
			}
			if name == scAccept || isE2E(name) {
				w.workerPG, w.workerRedis = per("worker-pg", false), per("worker-redis", false)
			} else {
				w.workerPG, w.workerRedis = "–", "–"
			}
		}
		rows = append(rows, w)
	}
	return rows
}

func (b *bench) refRows() []row {
	var rows []row
	add := func(name, unit string, r result, errText string) {
		if errText != "" {
			rows = append(rows, row{name: name, rate: "not measured: " + truncate(errText, 80)})
			return
		}
		w := row{name: name, rate: fmt.Sprintf("%.0f %s", r.PerSec(), unit), errors: fmt.Sprint(r.Errors)}
		if len(r.Latencies) > 0 {
			w.p50, w.p99 = ms(percentile(r.Latencies, 50)), ms(percentile(r.Latencies, 99))
		}
		rows = append(rows, w)
	}
	for _, r := range b.refs.pgbench {
		add("pgbench: "+r.variant.name, "tx/s", r.res, r.err)
	}
	add("Asynq no-op, closed loop", "tasks/s", b.refs.asynqClosed, b.refs.asynqErr)
	add("Asynq: enqueue only, flat out", "tasks/s", b.refs.asynqEnqueue, b.refs.asynqErr)
	add("Asynq no-op: a full queue worked off", "tasks/s", b.refs.asynqFull, b.refs.asynqErr)
	add("bare Gin, constant answer", "req/s", b.refs.gin, b.refs.ginErr)
	return rows
}

// summaryTable is what the terminal shows at the end.
func (b *bench) summaryTable() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-22s %12s %9s %9s %6s %5s  %-30s %6s %6s %6s %6s\n", "scenario", "rate", "p50", "p99", "errors", "429s", "vs reference", "apiPG", "apiRd", "wrkPG", "wrkRd")
	for _, r := range b.rows() {
		fmt.Fprintf(&sb, "%-22s %12s %9s %9s %6s %5s  %-30s %6s %6s %6s %6s\n", r.name, r.rate, r.p50, r.p99, r.errors, r.limited, r.ratio, r.apiPG, r.apiRedis, r.workerPG, r.workerRedis)
	}
	sb.WriteString("\nreferences\n")
	for _, r := range b.refRows() {
		fmt.Fprintf(&sb, "%-70s %14s %9s %9s\n", r.name, r.rate, r.p50, r.p99)
	}
	for _, name := range []string{scE2E, scE2EWait} {
		if e2e, ok := b.timed[name]; ok {
			fmt.Fprintf(&sb, "\n%s, accept→succeeded as the server recorded it: p50 %s, p99 %s (queued before a worker started it: p50 %s, p99 %s)",
				name, ms(percentile(e2e.Server, 50)), ms(percentile(e2e.Server, 99)), ms(percentile(e2e.Queued, 50)), ms(percentile(e2e.Queued, 99)))
		}
	}
	sb.WriteString("\n")
	return sb.String()
}

// report is BENCHMARKS.md.
func (b *bench) report(m machine) string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	o := b.opts
	p("# Benchmarks\n\n")
	p("Written by `make bench` (`go run ./cmd/mocdbench`); run it again to refresh.\n")
	p("What one mocd node sustains, measured side by side in one run with what\n")
	p("Postgres, Redis and HTTP on the same machine allow.\n\n")
	p("| | |\n|---|---|\n")
	p("| date | %s |\n", m.date.Format("2006-01-02 15:04 MST"))
	p("| commit | %s |\n", m.commit)
	p("| machine | %s, %d cores, %s memory |\n", m.cpu, m.cores, m.memory)
	p("| software | %s, PostgreSQL %s, Redis %s, %s |\n", m.goVersion, m.postgres, m.redis, m.pgbench)
	p("| load average | %s before the run, %s after (others' work on the machine makes figures noisy) |\n", m.loadBefore, m.loadAfter)
	p("| run time | %s for this run, building mocd included |\n", time.Since(b.started).Round(time.Second))
	p("| settings | %d concurrent clients (HTTP, pgbench and Asynq alike), %s warm-up + %s measured per scenario, FLYSIM_DELAY=0, end-to-end polls every %s |\n",
		o.clients, o.warmup, o.duration, o.pollEvery)
	p("| data | %d business accounts × %d keys × %d instances; a scale account with %d operations |\n",
		o.clients*o.accountsPerClient, o.keysPerAccount, o.instancesPerAccount, o.scaleOps)
	p("\n")
	sb.WriteString(targetsTable(targets(b.figures())))

	p("## Results\n\n")
	p("Rates count requests (end-to-end: operations) that started and finished inside\n")
	p("the measured window; latencies are those of the successful ones, as the client\n")
	p("saw them. Errors are answers other than the expected status; 429s are counted\n")
	p("apart. The round-trip columns come from the counting pass (below): Postgres and\n")
	p("Redis round trips per HTTP request for the api (end-to-end: per operation, its\n")
	p("polls included), per operation for the worker.\n\n")
	p("| scenario | rate | p50 | p99 | errors | 429s | ratio to reference | api PG | api Redis | worker PG | worker Redis |\n")
	p("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, r := range b.rows() {
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.rate, r.p50, r.p99, r.errors, r.limited, r.ratio, r.apiPG, r.apiRedis, r.workerPG, r.workerRedis)
	}
	p("\n| reference | rate | p50 | p99 |\n|---|---:|---:|---:|\n")
	for _, r := range b.refRows() {
		p("| %s | %s | %s | %s |\n", r.name, r.rate, r.p50, r.p99)
	}
	p("\n")
	for _, name := range scenarioOrder {
		if r := b.timed[name]; r.Errors > 0 {
			p("- **%s**: %d errors, the first: %s\n", name, r.Errors, truncate(r.FirstErr, 200))
		}
	}
	if e2e, ok := b.timed[scE2E]; ok {
		p("- **end-to-end**: each client restarts one of its own instances and polls the\n")
		p("  operation every %s until it has succeeded, then the next; %d operations,\n", o.pollEvery, e2e.Units)
		p("  %.1f HTTP requests per operation. Latency accept→succeeded as the client saw it\n", float64(e2e.Requests)/float64(max(e2e.Units, 1)))
		p("  (bounded below by the poll interval) is in the table; as the server recorded it\n")
		p("  (finished_at − created_at): p50 %s, p99 %s; of which queued before a worker\n", ms(percentile(e2e.Server, 50)), ms(percentile(e2e.Server, 99)))
		p("  started it (started_at − created_at): p50 %s, p99 %s.\n", ms(percentile(e2e.Queued, 50)), ms(percentile(e2e.Queued, 99)))
		if w, ok := b.timed[scE2EWait]; ok {
			p("  With the wait endpoint in place of the polls (end-to-end with wait), as the\n")
			p("  server recorded it: p50 %s, p99 %s; queued p50 %s, p99 %s.\n",
				ms(percentile(w.Server, 50)), ms(percentile(w.Server, 99)), ms(percentile(w.Queued, 50)), ms(percentile(w.Queued, 99)))
		}
		p("  created_at is the start of the accept's transaction, so \"queued\" includes that\n")
		p("  transaction (its statements and its commit's WAL flush) and the NOTIFY that\n")
		p("  wakes the worker only at its commit; the polls of %d clients every %s load\n", o.clients, o.pollEvery)
		p("  the same two cores.\n")
	}
	if b.walk.Units > 0 {
		p("- **scale**: page 1000 is reached by following `next_cursor` from page 1\n")
		p("  (cursors are sealed by the server; limit 50, so page 1000 holds operations\n")
		p("  49,951–50,000 of %d). The walk, one client: %d requests, p50 %s, p99 %s.\n",
			o.scaleOps, b.walk.Units, ms(percentile(b.walk.Latencies, 50)), ms(percentile(b.walk.Latencies, 99)))
		p("  Each page scenario is %d requests by %d clients, not a fixed time: the\n", o.pageUnits, o.clients)
		p("  operations belong to one account, whose ceiling is 1,500 requests a minute.\n")
	}
	if d := b.drain; d.Backlog > 0 {
		p("- **accept backlog**: accepts outrun the worker (operations of one instance run\n")
		p("  one at a time, in accept order). After the scenario %d operations were\n", d.Backlog)
		p("  unfinished; the worker finished %d of them in %s (%.0f ops/s with a full queue)", d.Done, d.Elapsed.Round(100*time.Millisecond), float64(d.Done)/d.Elapsed.Seconds())
		if d.Err != "" {
			p(" and had not caught up when the wait ended")
		}
		p(".\n")
	}
	p("- **rate limits** are in the path of every request and refuse none: each client\n")
	p("  spreads its requests over %d accounts × %d keys of its own, and the limiter's\n", o.accountsPerClient, o.keysPerAccount)
	p("  buckets are emptied (`moc:rl:*` deleted) before each scenario, so each starts\n")
	p("  with full allowances; any 429 would be counted in its column.\n\n")

	p("## Where the CPU went\n\n")
	p("CPU time per request (end-to-end: per operation) of each process during the\n")
	p("measured window, from /proc. \"pg/api\" and \"pg/worker\" are the Postgres\n")
	p("backends serving the api's and the worker's connections (told apart by\n")
	p("application_name). \"others\" is busy time of the machine charged to none of\n")
	p("them: other work on a shared machine, and kernel time such as loopback\n")
	p("networking.\n\n")
	p("| scenario | api | pg/api | worker | pg/worker | redis | flysim | harness (client) | others | machine busy |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	cpuRow := func(name string, r result) {
		if r.Units == 0 || r.CPU.Capacity == 0 {
			return
		}
		per := func(d time.Duration) string {
			return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(r.Units))
		}
		g := r.CPU.ByGroup
		dash := func(k string) string {
			if _, ok := g[k]; !ok {
				return "–"
			}
			return per(g[k])
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% |\n", name, dash("api"), dash("postgres/api"), dash("worker"), dash("postgres/worker"),
			dash("redis"), dash("flysim"), dash("harness"), per(r.CPU.Others), 100*float64(r.CPU.Busy)/float64(r.CPU.Capacity))
	}
	for _, name := range scenarioOrder {
		cpuRow(name, b.timed[name])
	}
	if r := b.refs.gin; r.Units > 0 && r.CPU.Capacity > 0 {
		g := r.CPU.ByGroup
		per := func(d time.Duration) string {
			return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(r.Units))
		}
		p("| bare Gin | %s (Gin) | – | – | – | – | – | %s | %s | %.0f%% |\n", per(g["gin"]), per(g["harness"]), per(r.CPU.Others), 100*float64(r.CPU.Busy)/float64(r.CPU.Capacity))
	}
	for _, run := range b.refs.pgbench {
		r := run.res
		if r.Units == 0 || r.CPU.Capacity == 0 {
			continue
		}
		per := func(d time.Duration) string {
			return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(r.Units))
		}
		p("| pgbench: %s | – | %s | – | – | – | – | %s (pgbench) | %s | %.0f%% |\n", run.variant.name, per(r.CPU.ByGroup["postgres"]),
			per(r.CPU.ByGroup["pgbench"]), per(r.CPU.Others), 100*float64(r.CPU.Busy)/float64(r.CPU.Capacity))
	}
	p("\n")

	b.reportCounts(p)
	b.reportProfiles(p)

	p("## The pgbench script\n\n")
	p("`bench/accept.sql`, run as `pgbench -n -M extended -c %d -j 2 -T %d -f bench/accept.sql -l`\n", o.clients, int((o.warmup+o.duration+time.Second).Seconds()+0.5))
	p("on a fresh database of its own on the same server (the first %s of its log are\n", o.warmup)
	p("left out). The other accept row runs the same script with `-M prepared`\n")
	p("(statements parsed and planned once per connection, as mocd now sends them);\n")
	p("`bench/poll.sql` holds a poll's two statements.\n\n")
	for _, script := range []string{pgbenchScript, pgbenchPollScript} {
		src, err := os.ReadFile(script)
		if err != nil {
			continue
		}
		p("`%s`:\n\n```sql\n%s```\n\n", script, src)
		name := scAccept
		if script == pgbenchPollScript {
			name = scPoll
		}
		if c, ok := b.counted[name]; ok && c.Requests > 0 {
			sent := float64(c.Per["api-pg"].Statements()) / float64(c.Requests)
			p("It has %d statements; in the counting pass the api sent %.2f per %s request\n", scriptStatements(src), sent, name)
			p("(listed under *Round trips per request*).\n\n")
		}
	}

	p("## Method\n\n")
	p("- Processes: `mocd flysim` (FLYSIM_DELAY=0), `mocd worker` and `mocd api`, built by\n")
	p("  the run from this commit, each its own process with plain HTTP on loopback\n")
	p("  (MOC_INSECURE_HTTP=true), logging at info as in production; a fresh database\n")
	p("  `mocd_bench_*` on the local server (dropped at the end); a private\n")
	p("  redis-server on a free port. The harness's clients use Go's net/http with\n")
	p("  keep-alive, one connection per client.\n")
	p("- Timed scenarios, in order: list, poll, replay, the scale pages, end-to-end,\n")
	p("  accept (last, because its backlog keeps the worker busy afterwards).\n")
	p("  Accepts and end-to-end operations are restarts of the client's own\n")
	p("  instances; poll reads, and replay repeats, a finished restart of the\n")
	p("  client's account made while seeding.\n")
	p("- References, measured while mocd's api and worker are stopped: pgbench with\n")
	p("  the statements of one accept; Asynq v0.26 with a no-op handler on Redis\n")
	p("  database 1 of the same redis-server, its server configured like mocd's\n")
	p("  worker (concurrency 20, 100 ms poll interval), closed loop (each client\n")
	p("  enqueues one task and waits for it to be processed) and flat out; a bare\n")
	p("  Gin handler answering an Operation-sized constant, a process of its own,\n")
	p("  driven by the same client code.\n")
	p("- Round trips are counted on the wire by proxies (see below), because\n")
	p("  pg_stat_statements is not loaded on the shared server and INFO commandstats\n")
	p("  cannot tell the api from the worker.\n")
	p("- Profiles: CPU profiles of the running `mocd api` itself, read from its\n")
	p("  opt-in debug listener (`MOC_DEBUG_LISTEN`, loopback only), after the timed\n")
	p("  scenarios with the worker stopped (the api alone).\n")
	p("  The profiles are in `%s/` (`go tool pprof -http : %s/accept.pprof`).\n", b.outDir, b.outDir)
	return sb.String()
}

// reportCounts writes the counting pass: statements and commands per
// request, by name.
func (b *bench) reportCounts(p func(string, ...any)) {
	if len(b.counted) == 0 {
		return
	}
	p("## Round trips per request\n\n")
	p("Counted on the wire in a separate pass: the api and the worker run with their\n")
	p("Postgres and Redis connections behind counting proxies (one per process and\n")
	p("server), and one client sends %d requests of each scenario one after the other\n", b.opts.countUnits)
	p("(accept: each on an instance of its own; end-to-end: %d operations). A round\n", b.opts.countE2E)
	p("trip is a burst of client bytes after the server last spoke (lib/pq sends a\n")
	p("statement's Parse/Bind/Execute/Sync together; BEGIN and COMMIT are one each).\n")
	p("Statements are named by their SQL, commands by name (Lua scripts by what their\n")
	p("first key is about).\n\n")
	if len(b.idle) > 0 {
		secs := b.idleFor.Seconds()
		p("Idle, per second (the worker polls its queues and runs its relay whether or not\n")
		p("there is work; this is in every worker figure): api %.1f PG / %.1f Redis,\n",
			float64(b.idle["api-pg"].RoundTrips)/secs, float64(b.idle["api-redis"].RoundTrips)/secs)
		p("worker %.1f PG / %.1f Redis round trips.\n\n",
			float64(b.idle["worker-pg"].RoundTrips)/secs, float64(b.idle["worker-redis"].RoundTrips)/secs)
	}
	for _, name := range scenarioOrder {
		c, ok := b.counted[name]
		if !ok {
			continue
		}
		unit := "request"
		n := c.Requests
		if isE2E(name) {
			unit, n = "operation", c.Units
		}
		p("**%s** (%d %ss", name, n, unit)
		if isE2E(name) {
			p(", %.1f HTTP requests each", float64(c.Requests)/float64(max(c.Units, 1)))
		}
		p(")\n\n| per %s | round trips | statements / commands |\n|---|---:|---|\n", unit)
		procs := []string{"api-pg", "api-redis"}
		if name == scAccept || isE2E(name) {
			procs = append(procs, "worker-pg", "worker-redis")
		}
		for _, proxy := range procs {
			k := c.Per[proxy]
			div := float64(n)
			if strings.HasPrefix(proxy, "worker") {
				div = float64(c.Units)
			}
			p("| %s | %.2f | %s |\n", proxy, float64(k.RoundTrips)/div, namesPer(k, div))
		}
		p("\n")
	}
}

// namesPer lists names by count per unit, most frequent first.
func namesPer(k wirecount.Counts, div float64) string {
	type nc struct {
		name string
		n    int64
	}
	var list []nc
	for name, n := range k.ByName {
		list = append(list, nc{name, n})
	}
	slices.SortFunc(list, func(a, b nc) int {
		if a.n != b.n {
			return int(b.n - a.n)
		}
		return strings.Compare(a.name, b.name)
	})
	var parts []string
	for _, x := range list {
		v := float64(x.n) / div
		if v < 0.01 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%.2f `%s`", v, strings.ReplaceAll(x.name, "|", "\\|")))
	}
	if len(parts) == 0 {
		return "–"
	}
	return strings.Join(parts, "<br>")
}

func (b *bench) reportProfiles(p func(string, ...any)) {
	for _, name := range []string{scAccept, scPoll} {
		pr, ok := b.profiles[name]
		if !ok {
			continue
		}
		p("## CPU profile of the api: %s\n\n", name)
		if pr.Err != "" {
			p("Not taken: %s\n\n", pr.Err)
			continue
		}
		p("%s of samples over %s of load (%.0f req/s while profiled); `%s`.\n", pr.Total.Round(10*time.Millisecond),
			b.opts.duration, pr.Run.PerSec(), pr.Path)
		share := func(d time.Duration) string { return fmt.Sprintf("%.1f%%", 100*float64(d)/float64(max(pr.Total, 1))) }
		p("In system calls (mostly socket reads and writes): %s of samples; allocating or\n", share(pr.Syscalls))
		p("collecting garbage: %s.\n\n", share(pr.Alloc))
		p("By library: each sample goes to the first library frame from the leaf up, so\n")
		p("a socket write counts for the client that made it (lib/pq, go-redis,\n")
		p("net/http); shares add up to 100%%.\n\n")
		p("| library | share |\n|---|---:|\n")
		for _, c := range pr.ByLibrary {
			p("| %s | %s |\n", c.Name, share(c.Time))
		}
		p("\nBy mocd function: each sample goes to the innermost mocd function on its\n")
		p("stack, the code that asked for the work (a middleware's share excludes the\n")
		p("handlers after it).\n\n")
		p("| mocd function | share |\n|---|---:|\n")
		for _, c := range pr.ByMocd {
			p("| `%s` | %s |\n", c.Name, share(c.Time))
		}
		p("\n| top functions (self) | share |\n|---|---:|\n")
		for _, c := range pr.Flat {
			p("| `%s` | %s |\n", c.Name, share(c.Time))
		}
		p("\n")
	}
}

// scriptStatements counts the SQL statements of a pgbench script: its
// lines that are neither comments nor meta-commands.
func scriptStatements(src []byte) int {
	n := 0
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "--") && !strings.HasPrefix(line, "\\") {
			n++
		}
	}
	return n
}

// reportFindings states, with this run's figures, where the time of the
// accept, poll and end-to-end paths goes.
