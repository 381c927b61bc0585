package main

import (
	"fmt"
	"strings"
	"time"
)

// The targets of issue 18, checked against each run's own figures. The
// issue's "today" is the 09:28 run of 2026-11-22 (commit 00ba080); its
// figures are kept here as ratios to their same-run references, because
// absolute figures move with the machine's load and the ratios are what
// the issue counts.

// trips is a scenario's round trips per unit, as in the report's table.
type trips struct{ apiPG, apiRedis, workerPG, workerRedis float64 }

// figures is what a target is judged on. A zero figure is "not measured".
type figures struct {
	accept, acceptAlone, poll, list, page1, page1000 float64 // req/s
	e2e                                              float64 // ops/s
	pgbench, pgbenchPrepared, gin, asynqClosed       float64 // the references
	e2eServerP50, e2eOneServerP50                    time.Duration
	idleWorkerRedis                                  float64 // round trips per second
	errors                                           map[string]int64
	trips                                            map[string]trips // scenario → round trips
}

// before holds the baseline (the 09:28 run of 2026-11-22).
var before = struct {
	acceptPgbench, pollGin, listGin, page1Gin, page1000Gin, e2eAsynq float64
	e2eServerP50                                                     time.Duration
	idleWorkerRedis                                                  float64
	trips                                                            map[string]trips
}{
	acceptPgbench: 163.0 / 506, pollGin: 1173.0 / 9192, listGin: 945.0 / 9192,
	page1Gin: 686.0 / 9192, page1000Gin: 669.0 / 9192, e2eAsynq: 83.0 / 4403,
	e2eServerP50:    124 * time.Millisecond,
	idleWorkerRedis: 61.0,
	trips: map[string]trips{
		scAccept:   {11.02, 2.00, 19.06, 3.07},
		scReplay:   {2.00, 1.00, 0, 0},
		scPoll:     {2.00, 1.00, 0, 0},
		scList:     {2.00, 1.00, 0, 0},
		scE2E:      {19.13, 6.07, 19.20, 8.87},
		scPage1:    {2.00, 1.00, 0, 0},
		scPage1000: {2.00, 1.00, 0, 0},
	},
}

// target is one line of the targets table.
type target struct {
	Name, Before, Now string
	Met               bool
}

// div is a/b, or 0 when either is not measured.
func div(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

// atLeast is a target "got ≥ want" on a ratio; 0 is not measured.
func atLeast(name, beforeText string, got, want float64, about string) target {
	if got == 0 {
		return target{Name: name, Before: beforeText, Now: "not measured"}
	}
	return target{Name: name, Before: beforeText, Now: fmt.Sprintf("%.3f× %s (target %.3f×)", got, about, want), Met: got >= want}
}

// targets judges the run's figures against issue 18's targets.
func targets(f figures) []target {
	var out []target
	out = append(out, atLeast("accept with the api alone ≥ 0.5× pgbench `-M prepared`", "(no such scenario)",
		div(f.acceptAlone, f.pgbenchPrepared), 0.5, "pgbench -M prepared"))
	out = append(out, atLeast("full-system accept ≥ 2× its ratio to pgbench", fmt.Sprintf("%.2f× pgbench", before.acceptPgbench),
		div(f.accept, f.pgbench), 2*before.acceptPgbench, "pgbench"))
	out = append(out, atLeast("poll ≥ 0.2× bare Gin", fmt.Sprintf("%.2f× Gin", before.pollGin),
		div(f.poll, f.gin), 0.2, "Gin"))
	// "list and page scenarios in proportion": as the poll's, 3× today's ratio.
	for _, s := range []struct {
		name         string
		rate, before float64
	}{{scList, f.list, before.listGin}, {scPage1, f.page1, before.page1Gin}, {scPage1000, f.page1000, before.page1000Gin}} {
		out = append(out, atLeast(s.name+" in proportion (3× its ratio to Gin)", fmt.Sprintf("%.2f× Gin", s.before),
			div(s.rate, f.gin), 3*s.before, "Gin"))
	}

	e2e := target{Name: "accept→succeeded p50 ≤ 30 ms, server side", Before: "124 ms", Now: "not measured"}
	if f.e2eServerP50 > 0 {
		e2e.Now, e2e.Met = ms(f.e2eServerP50), f.e2eServerP50 <= 30*time.Millisecond
	}
	out = append(out, e2e)
	// Not one of the targets: the same bound with one operation in
	// flight in the whole system, the pipeline's own latency.
	one := target{Name: "(beside it) the same with one client alone", Before: "(no such scenario)", Now: "not measured"}
	if f.e2eOneServerP50 > 0 {
		one.Now, one.Met = ms(f.e2eOneServerP50), f.e2eOneServerP50 <= 30*time.Millisecond
	}
	out = append(out, one)

	idle := target{Name: "an idle worker's Redis round trips not above today's", Before: fmt.Sprintf("%.1f/s", before.idleWorkerRedis), Now: "not measured"}
	if f.idleWorkerRedis > 0 {
		idle.Now, idle.Met = fmt.Sprintf("%.1f/s", f.idleWorkerRedis), f.idleWorkerRedis <= before.idleWorkerRedis
	}
	out = append(out, idle)

	// No scenario slower: judged on each scenario's ratio to its reference,
	// written to four places so that a near miss does not read as a tie.
	var slower []string
	for _, s := range []struct {
		name      string
		got, then float64
	}{
		{scAccept, div(f.accept, f.pgbench), before.acceptPgbench},
		{scPoll, div(f.poll, f.gin), before.pollGin},
		{scList, div(f.list, f.gin), before.listGin},
		{scPage1, div(f.page1, f.gin), before.page1Gin},
		{scPage1000, div(f.page1000, f.gin), before.page1000Gin},
		{scE2E, div(f.e2e, f.asynqClosed), before.e2eAsynq},
	} {
		if s.got == 0 {
			slower = append(slower, s.name+" not measured")
		} else if s.got < s.then {
			slower = append(slower, fmt.Sprintf("%s %.4f× < %.4f×", s.name, s.got, s.then))
		}
	}
	out = append(out, verdict("no scenario slower (ratio to its reference)", "the ratios above", slower))

	var errs []string
	for _, name := range scenarioOrder {
		if n := f.errors[name]; n > 0 {
			errs = append(errs, fmt.Sprintf("%s: %d", name, n))
		}
	}
	out = append(out, verdict("no new errors", "0", errs))

	var more []string
	for _, name := range scenarioOrder {
		was, ok := before.trips[name]
		if !ok {
			continue
		}
		now, ok := f.trips[name]
		if !ok {
			more = append(more, name+" not counted")
			continue
		}
		for _, c := range []struct {
			what     string
			now, was float64
		}{{"api PG", now.apiPG, was.apiPG}, {"api Redis", now.apiRedis, was.apiRedis}, {"worker PG", now.workerPG, was.workerPG}, {"worker Redis", now.workerRedis, was.workerRedis}} {
			// Counts are means over a pass; a hundredth is rounding.
			if c.now > c.was+0.005 {
				more = append(more, fmt.Sprintf("%s %s %.2f > %.2f", name, c.what, c.now, c.was))
			}
		}
	}
	out = append(out, verdict("every round-trip count equal or lower", "accept api 11.02 PG / 2.00 Redis", more))
	return out
}

// verdict is a target met when nothing was found against it.
func verdict(name, beforeText string, against []string) target {
	if len(against) == 0 {
		return target{Name: name, Before: beforeText, Now: "yes", Met: true}
	}
	return target{Name: name, Before: beforeText, Now: strings.Join(against, "; ")}
}

// figures gathers the run's own figures for the targets.
func (b *bench) figures() figures {
	rate := func(name string) float64 { return b.timed[name].PerSec() }
	f := figures{
		accept: rate(scAccept), acceptAlone: rate(scAcceptAlone), poll: rate(scPoll), list: rate(scList),
		page1: rate(scPage1), page1000: rate(scPage1000), e2e: rate(scE2E),
		pgbench: b.pgbenchTPS(pgbenchScript), pgbenchPrepared: b.pgbenchTPSMode(pgbenchScript, "prepared"),
		gin: b.refs.gin.PerSec(), asynqClosed: b.refs.asynqClosed.PerSec(),
		errors: map[string]int64{}, trips: map[string]trips{},
	}
	if r, ok := b.timed[scE2E]; ok && len(r.Server) > 0 {
		f.e2eServerP50 = percentile(r.Server, 50)
	}
	if r, ok := b.timed[scE2EOne]; ok && len(r.Server) > 0 {
		f.e2eOneServerP50 = percentile(r.Server, 50)
	}
	if secs := b.idleFor.Seconds(); secs > 0 && len(b.idle) > 0 {
		f.idleWorkerRedis = float64(b.idle["worker-redis"].RoundTrips) / secs
	}
	for name, r := range b.timed {
		f.errors[name] = int64(r.Errors)
	}
	for name, c := range b.counted {
		per := func(proxy string, n int) float64 {
			if n == 0 {
				return 0
			}
			return float64(c.Per[proxy].RoundTrips) / float64(n)
		}
		n := c.Requests
		if isE2E(name) {
			n = c.Units
		}
		t := trips{apiPG: per("api-pg", n), apiRedis: per("api-redis", n)}
		if name == scAccept || isE2E(name) {
			t.workerPG, t.workerRedis = per("worker-pg", c.Units), per("worker-redis", c.Units)
		}
		f.trips[name] = t
	}
	return f
}
