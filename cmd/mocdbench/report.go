package main

import (
	"bufio"
	"cmp"
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/myopenclaw/mocd/internal/wirecount"
)

// machine describes where and when the run happened.
type machine struct {
	Date       time.Time
	Commit     string
	CPU        string
	Cores      int
	Memory     string
	GoVersion  string
	Postgres   string
	Redis      string
	Pgbench    string
	LoadBefore string
	LoadAfter  string
}

func machineInfo(ctx context.Context) machine {
	m := machine{Date: time.Now().UTC(), Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadAverage()}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md").Output(); err == nil && len(st) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	m.CPU = firstField("/proc/cpuinfo", "model name")
	if mem := firstField("/proc/meminfo", "MemTotal"); mem != "" {
		var kb int64
		fmt.Sscanf(mem, "%d", &kb)
		m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if db, err := sql.Open("postgres", adminURL()); err == nil {
		db.QueryRowContext(ctx, `SHOW server_version`).Scan(&m.Postgres)
		db.Close()
	}
	if out, err := exec.CommandContext(ctx, "redis-server", "--version").Output(); err == nil {
		m.Redis = strings.TrimSpace(string(out))
		if f := strings.Fields(m.Redis); len(f) >= 3 {
			m.Redis = strings.TrimPrefix(f[2], "v=")
		}
	}
	if out, err := exec.CommandContext(ctx, "pgbench", "--version").Output(); err == nil {
		m.Pgbench = strings.TrimSpace(string(out))
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
	Name, Rate, P50, P99, Errors, Limited, Ratio, APIPG, APIRedis, WorkerPG, WorkerRedis string
	// Passes is a reference's rate in each of its two passes.
	Passes string
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
			Name:    name,
			Rate:    fmt.Sprintf("%.0f req/s", r.PerSec()),
			P50:     ms(percentile(r.Latencies, 50)),
			P99:     ms(percentile(r.Latencies, 99)),
			Errors:  fmt.Sprint(r.Errors),
			Limited: fmt.Sprint(r.Limited),
		}
		switch name {
		case scAccept, scReplay:
			w.Ratio = ratio(r.PerSec(), pgTPS) + " pgbench, " + ratio(r.PerSec(), ginRPS) + " Gin"
		case scAcceptAlone:
			w.Ratio = ratio(r.PerSec(), b.pgbenchTPSMode(pgbenchScript, "prepared")) + " pgbench -M prepared, " + ratio(r.PerSec(), pgTPS) + " pgbench"
		case scPoll:
			w.Ratio = ratio(r.PerSec(), ginRPS) + " Gin, " + ratio(r.PerSec(), pgPoll) + " pgbench"
		case scE2E, scE2EWait, scE2EOne:
			w.Rate = fmt.Sprintf("%.0f ops/s", r.PerSec())
			w.Ratio = ratio(r.PerSec(), asynqClosed) + " Asynq (closed loop)"
		default:
			w.Ratio = ratio(r.PerSec(), ginRPS) + " Gin"
		}
		counted := name
		switch name {
		case scAcceptAlone:
			counted = scAccept // the api sends the same statements
		case scE2EOne:
			counted = scE2EWait // the same statements, one client at a time
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
			w.APIPG, w.APIRedis = per("api-pg", !isE2E(name)), per("api-redis", !isE2E(name))
			if name == scAcceptAlone {
				w.WorkerPG, w.WorkerRedis = "stopped", "stopped"
				rows = append(rows, w)
				continue
			}
			if name == scAccept || isE2E(name) {
				w.WorkerPG, w.WorkerRedis = per("worker-pg", false), per("worker-redis", false)
			} else {
				w.WorkerPG, w.WorkerRedis = "–", "–"
			}
		}
		rows = append(rows, w)
	}
	return rows
}

func (b *bench) refRows() []row {
	rows := refRowsOf(b.refs)
	if len(b.refPasses[1].pgbench) == 0 { // not both passes ran
		return rows
	}
	// rates is each measured reference's rate, without its unit.
	rates := func(pass refResults) map[string]string {
		out := map[string]string{}
		for _, r := range refRowsOf(pass) {
			if n, _, ok := strings.Cut(r.Rate, " "); ok && r.Errors != "" {
				out[r.Name] = n
			}
		}
		return out
	}
	before, after := rates(b.refPasses[0]), rates(b.refPasses[1])
	for i, r := range rows {
		rows[i].Passes = cmp.Or(before[r.Name], "–") + " / " + cmp.Or(after[r.Name], "–")
	}
	return rows
}

// refRowsOf is the references table of one set of measurements.
func refRowsOf(refs refResults) []row {
	var rows []row
	add := func(name, unit string, r result, errText string) {
		if errText != "" {
			rows = append(rows, row{Name: name, Rate: "not measured: " + truncate(errText, 80)})
			return
		}
		w := row{Name: name, Rate: fmt.Sprintf("%.0f %s", r.PerSec(), unit), Errors: fmt.Sprint(r.Errors)}
		if len(r.Latencies) > 0 {
			w.P50, w.P99 = ms(percentile(r.Latencies, 50)), ms(percentile(r.Latencies, 99))
		}
		rows = append(rows, w)
	}
	for _, r := range refs.pgbench {
		add("pgbench: "+r.variant.name, "tx/s", r.res, r.err)
	}
	add("Asynq no-op, closed loop", "tasks/s", refs.asynqClosed, refs.asynqErr)
	add("Asynq: enqueue only, flat out", "tasks/s", refs.asynqEnqueue, refs.asynqErr)
	add("Asynq no-op: a full queue worked off", "tasks/s", refs.asynqFull, refs.asynqErr)
	add("bare Gin, constant answer", "req/s", refs.gin, refs.ginErr)
	return rows
}

// summaryTable is what the terminal shows at the end.
func (b *bench) summaryTable() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-22s %12s %9s %9s %6s %5s  %-30s %6s %6s %6s %6s\n", "scenario", "rate", "p50", "p99", "errors", "429s", "vs reference", "apiPG", "apiRd", "wrkPG", "wrkRd")
	for _, r := range b.rows() {
		fmt.Fprintf(&sb, "%-22s %12s %9s %9s %6s %5s  %-30s %6s %6s %6s %6s\n", r.Name, r.Rate, r.P50, r.P99, r.Errors, r.Limited, r.Ratio, r.APIPG, r.APIRedis, r.WorkerPG, r.WorkerRedis)
	}
	sb.WriteString("\nreferences\n")
	for _, r := range b.refRows() {
		fmt.Fprintf(&sb, "%-70s %14s %9s %9s\n", r.Name, r.Rate, r.P50, r.P99)
	}
	for _, name := range []string{scE2E, scE2EWait, scE2EOne} {
		if e2e, ok := b.timed[name]; ok {
			fmt.Fprintf(&sb, "\n%s, accept→succeeded as the server recorded it: p50 %s, p99 %s (queued before a worker started it: p50 %s, p99 %s)",
				name, ms(percentile(e2e.Server, 50)), ms(percentile(e2e.Server, 99)), ms(percentile(e2e.Queued, 50)), ms(percentile(e2e.Queued, 99)))
		}
	}
	sb.WriteString("\n")
	return sb.String()
}

//go:embed report.md.tmpl
var reportText string

// reportTemplate is BENCHMARKS.md's prose and layout. missingkey=error
// makes a key the data lacks an error, not "<no value>" in the report.
var reportTemplate = template.Must(template.New("report").Option("missingkey=error").Funcs(template.FuncMap{
	"p":   func(sorted []time.Duration, p float64) string { return ms(percentile(sorted, p)) },
	"per": perUnit,
}).Parse(reportText))

// perUnit is a/b to one decimal, such as HTTP requests per operation.
func perUnit(a, b int) string { return fmt.Sprintf("%.1f", float64(a)/float64(max(b, 1))) }

// render executes a template of report.md.tmpl: "report" is the whole
// document, "targets" the table of issue 18's targets.
func render(name string, data any) (string, error) {
	var sb strings.Builder
	if err := reportTemplate.ExecuteTemplate(&sb, name, data); err != nil {
		return "", err
	}
	return sb.String(), nil
}

// report is BENCHMARKS.md.
func (b *bench) report(m machine) (string, error) {
	return render("report", b.reportData(m))
}

// reportData is what report.md.tmpl renders: the run's settings and
// figures, formatted here so that the template only lays them out (but for
// the latencies of E2E, E2EWait and Walk: the template's p and per format
// those). A nil or empty part leaves its paragraph or section out.
type reportData struct {
	Machine machine
	RunTime time.Duration

	Clients, Accounts, AccountsPerClient, KeysPerAccount, InstancesPerAccount int
	ScaleOps, PageUnits, CountUnits, CountE2E, PgbenchSeconds                 int
	Warmup, Duration, PollEvery                                               time.Duration
	OutDir                                                                    string

	Targets  []target
	Rows     []row // the scenarios
	Refs     []row // the references
	Errors   []scenarioErrors
	E2E      *result
	E2EWait  *result
	E2EOne   *result
	Walk     *result // to page 1000 of the scale account's operations
	Drain    *drainNote
	CPU      []cpuRow
	Memory   string // peak resident memory of each mocd process
	Idle     *idleNote
	Counts   []countSection
	Profiles []profileNote
	Scripts  []scriptNote
}

type scenarioErrors struct {
	Name   string
	Errors int
	First  string
}

type drainNote struct {
	Backlog, Done int
	Elapsed       time.Duration
	Rate          string
	Unfinished    bool
}

// cpuRow is CPU time per unit by process; an empty cell is "–".
type cpuRow struct{ Name, API, PGAPI, Worker, PGWorker, Redis, Flysim, Harness, Others, Busy string }

// idleNote is round trips per second with nothing to do.
type idleNote struct{ APIPG, APIRedis, WorkerPG, WorkerRedis string }

// countSection is one scenario of the counting pass.
type countSection struct {
	Name, Unit    string
	N             int
	RequestsPerOp string // end-to-end only
	Proxies       []proxyCount
}

type proxyCount struct{ Proxy, RoundTrips, Names string }

type profileNote struct {
	Name, Process, Err, Rate, Path, Syscalls, Alloc string
	Total                                           time.Duration
	ByLibrary, ByMocd, Flat                         []share
}

type share struct{ Name, Share string }

type scriptNote struct {
	Path, Src, Scenario string
	Statements          int
	Sent                string // statements the api sent per request, when counted
}

func (b *bench) reportData(m machine) reportData {
	o := b.opts
	d := reportData{
		Machine: m, RunTime: time.Since(b.started).Round(time.Second),
		Clients: o.clients, Accounts: o.clients * o.accountsPerClient, AccountsPerClient: o.accountsPerClient,
		KeysPerAccount: o.keysPerAccount, InstancesPerAccount: o.instancesPerAccount,
		ScaleOps: o.scaleOps, PageUnits: o.pageUnits, CountUnits: o.countUnits, CountE2E: o.countE2E,
		PgbenchSeconds: int((o.warmup + o.duration + time.Second).Seconds() + 0.5),
		Warmup:         o.warmup, Duration: o.duration, PollEvery: o.pollEvery, OutDir: b.outDir,
		Targets: targets(b.figures()), Rows: b.rows(), Refs: b.refRows(),
		CPU: b.cpuRows(), Memory: b.memory(), Counts: b.countSections(), Profiles: b.profileNotes(), Scripts: b.scriptNotes(),
	}
	for _, name := range scenarioOrder {
		if r := b.timed[name]; r.Errors > 0 {
			d.Errors = append(d.Errors, scenarioErrors{name, r.Errors, truncate(r.FirstErr, 200)})
		}
	}
	if r, ok := b.timed[scE2E]; ok {
		d.E2E = &r
		if w, ok := b.timed[scE2EWait]; ok {
			d.E2EWait = &w
		}
		if o, ok := b.timed[scE2EOne]; ok {
			d.E2EOne = &o
		}
	}
	if b.walk.Units > 0 {
		d.Walk = &b.walk
	}
	if dr := b.drain; dr.Backlog > 0 {
		d.Drain = &drainNote{Backlog: dr.Backlog, Done: dr.Done, Elapsed: dr.Elapsed.Round(100 * time.Millisecond),
			Rate: fmt.Sprintf("%.0f", float64(dr.Done)/dr.Elapsed.Seconds()), Unfinished: dr.Err != ""}
	}
	if secs := b.idleFor.Seconds(); len(b.idle) > 0 {
		perSec := func(proxy string) string { return fmt.Sprintf("%.1f", float64(b.idle[proxy].RoundTrips)/secs) }
		d.Idle = &idleNote{perSec("api-pg"), perSec("api-redis"), perSec("worker-pg"), perSec("worker-redis")}
	}
	return d
}

// cpuRows is CPU time per unit of each timed scenario and reference.
func (b *bench) cpuRows() []cpuRow {
	var rows []cpuRow
	add := func(name string, r result, cells func(per func(string) string) cpuRow) {
		if r.Units == 0 || r.CPU.Capacity == 0 {
			return
		}
		w := cells(func(group string) string {
			d, ok := r.CPU.ByGroup[group]
			if !ok {
				return ""
			}
			return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)/float64(r.Units))
		})
		w.Name = name
		w.Others = fmt.Sprintf("%.3f ms", float64(r.CPU.Others)/float64(time.Millisecond)/float64(r.Units))
		w.Busy = fmt.Sprintf("%.0f%%", 100*float64(r.CPU.Busy)/float64(r.CPU.Capacity))
		rows = append(rows, w)
	}
	for _, name := range scenarioOrder {
		add(name, b.timed[name], func(per func(string) string) cpuRow {
			return cpuRow{API: per("api"), PGAPI: per("postgres/api"), Worker: per("worker"), PGWorker: per("postgres/worker"),
				Redis: per("redis"), Flysim: per("flysim"), Harness: per("harness")}
		})
	}
	add("bare Gin", b.refs.gin, func(per func(string) string) cpuRow {
		return cpuRow{API: per("gin") + " (Gin)", Harness: per("harness")}
	})
	for _, run := range b.refs.pgbench {
		add("pgbench: "+run.variant.name, run.res, func(per func(string) string) cpuRow {
			return cpuRow{PGAPI: per("postgres"), Harness: per("pgbench") + " (pgbench)"}
		})
	}
	return rows
}

// memory is the peak resident set of each mocd process over the timed
// scenarios ("api 41 MiB, worker 33 MiB, flysim 18 MiB"), "" if unknown.
func (b *bench) memory() string {
	var peaks []map[string]int64
	for _, r := range b.timed {
		peaks = append(peaks, r.CPU.PeakRSS)
	}
	all := maxPeaks(peaks...)
	var parts []string
	for _, g := range []string{"api", "worker", "flysim"} {
		if kb, ok := all[g]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f MiB", g, float64(kb)/1024))
		}
	}
	return strings.Join(parts, ", ")
}

// countSections is the counting pass: round trips, statements and
// commands per request (end-to-end: per operation), by name.
func (b *bench) countSections() []countSection {
	var out []countSection
	for _, name := range scenarioOrder {
		c, ok := b.counted[name]
		if !ok {
			continue
		}
		s := countSection{Name: name, Unit: "request", N: c.Requests}
		if isE2E(name) {
			s.Unit, s.N = "operation", c.Units
			s.RequestsPerOp = perUnit(c.Requests, c.Units)
		}
		proxies := []string{"api-pg", "api-redis"}
		if name == scAccept || isE2E(name) {
			proxies = append(proxies, "worker-pg", "worker-redis")
		}
		for _, proxy := range proxies {
			k, div := c.Per[proxy], float64(s.N)
			if strings.HasPrefix(proxy, "worker") {
				div = float64(c.Units)
			}
			s.Proxies = append(s.Proxies, proxyCount{proxy, fmt.Sprintf("%.2f", float64(k.RoundTrips)/div), namesPer(k, div)})
		}
		out = append(out, s)
	}
	return out
}

// profileNotes is where the api's CPU went in the accept and poll profiles,
// and the worker's in end-to-end with wait.
func (b *bench) profileNotes() []profileNote {
	var out []profileNote
	for _, name := range []string{scAccept, scPoll, "worker " + scE2EWait} {
		pr, ok := b.profiles[name]
		if !ok {
			continue
		}
		pct := func(d time.Duration) string { return fmt.Sprintf("%.1f%%", 100*float64(d)/float64(max(pr.Total, 1))) }
		shares := func(cs []fnCost) []share {
			var out []share
			for _, c := range cs {
				out = append(out, share{c.Name, pct(c.Time)})
			}
			return out
		}
		out = append(out, profileNote{Name: strings.TrimPrefix(name, "worker "), Process: pr.Process, Err: pr.Err, Rate: fmt.Sprintf("%.0f %s", pr.Run.PerSec(), map[bool]string{true: "ops/s", false: "req/s"}[pr.Process == "worker"]), Path: pr.Path,
			Syscalls: pct(pr.Syscalls), Alloc: pct(pr.Alloc), Total: pr.Total.Round(10 * time.Millisecond),
			ByLibrary: shares(pr.ByLibrary), ByMocd: shares(pr.ByMocd), Flat: shares(pr.Flat)})
	}
	return out
}

// scriptNotes are the pgbench scripts and, when counted, how many
// statements the api sent for the same request.
func (b *bench) scriptNotes() []scriptNote {
	var out []scriptNote
	for _, s := range []struct{ path, scenario string }{{pgbenchScript, scAccept}, {pgbenchPollScript, scPoll}} {
		src, err := os.ReadFile(s.path)
		if err != nil {
			continue
		}
		n := scriptNote{Path: s.path, Src: string(src), Scenario: s.scenario, Statements: scriptStatements(src)}
		if c, ok := b.counted[s.scenario]; ok && c.Requests > 0 {
			n.Sent = fmt.Sprintf("%.2f", float64(c.Per["api-pg"].Statements())/float64(c.Requests))
		}
		out = append(out, n)
	}
	return out
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
