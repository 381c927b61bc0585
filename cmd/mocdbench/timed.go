package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// spec is the load of a timed scenario.
func (b *bench) spec() loadSpec {
	return loadSpec{clients: b.opts.clients, warmup: b.opts.warmup, duration: b.opts.duration}
}

// cpuGroups are the processes whose CPU the timed scenarios report. The
// Postgres backends are split by the process they serve.
func (b *bench) cpuGroups(ctx context.Context) cpuGroups {
	name := databaseName(b.dbURL)
	return func() map[string][]int {
		pg, _ := backendPIDs(ctx, b.db, name)
		return map[string][]int{
			"api":             {b.apiP.pid()},
			"worker":          {b.workerP.pid()},
			"flysim":          {b.flysimP.pid()},
			"redis":           {b.redisP.pid()},
			"postgres/api":    pg[appAPI],
			"postgres/worker": pg[appWorker],
			"harness":         {os.Getpid()},
		}
	}
}

// application_name of each mocd process's Postgres sessions.
const (
	appAPI    = "mocd-api"
	appWorker = "mocd-worker"
)

// drainResult is how the worker worked off the accept scenario's backlog.
type drainResult struct {
	Backlog int
	Elapsed time.Duration
	Done    int
	Err     string
}

// runTimed drives every scenario against the directly connected system.
func (b *bench) runTimed(ctx context.Context) error {
	c := newHTTPClient(b.apiURL, b.opts.clients)
	defer c.close()
	groups := b.cpuGroups(ctx)
	run := func(name string, spec loadSpec, unit unitFunc) error {
		if err := b.resetRateLimits(ctx); err != nil {
			return err
		}
		b.step(fmt.Sprintf("scenario %s: %d clients, %s warm-up, %s measured", name, spec.clients, spec.warmup, spec.duration))
		r := drive(ctx, spec, unit, groups)
		b.timed[name] = r
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.Units == r.Errors {
			return fmt.Errorf("scenario %s: nothing succeeded: %s", name, r.FirstErr)
		}
		return nil
	}
	if err := run(scList, b.spec(), b.listUnit(c)); err != nil {
		return err
	}
	if err := run(scPoll, b.spec(), b.pollUnit(c)); err != nil {
		return err
	}
	if err := run(scReplay, b.spec(), b.replayUnit(c)); err != nil {
		return err
	}

	// Scale: the operations of one account, which a rate limit of 1,500
	// requests a minute bounds; so the two page scenarios are a fixed
	// number of requests within it rather than a fixed time.
	if err := b.resetRateLimits(ctx); err != nil {
		return err
	}
	b.step("scenario scale: walk the scale account's operations to page 1000")
	cursor, walk, err := b.walkPages(ctx, c, 1000)
	if err != nil {
		return err
	}
	b.walk, b.deepCursor = walk, cursor
	pages := loadSpec{clients: b.opts.clients, warmup: 0, duration: b.opts.duration, maxUnits: b.opts.pageUnits}
	if err := run(scPage1, pages, b.pageUnit(c, "")); err != nil {
		return err
	}
	if err := run(scPage1000, pages, b.pageUnit(c, b.deepCursor)); err != nil {
		return err
	}

	if err := run(scE2E, b.spec(), b.e2eUnit(c, "e2e", b.opts.pollEvery)); err != nil {
		return err
	}
	if err := b.waitOperations(ctx, 2*time.Minute); err != nil {
		return err
	}
	// The worker's CPU profile is taken during this scenario: with one
	// operation in flight per client, it is where the worker's time per
	// operation goes.
	var workerProfile func(result) (profileResult, error)
	if b.opts.profile {
		workerProfile = b.profileDuring(ctx, scE2EWait, "worker", b.workerDebugAddr)
	}
	if err := run(scE2EWait, b.spec(), b.e2eWaitUnit(c, "e2e-wait")); err != nil {
		return err
	}
	if err := b.waitOperations(ctx, 2*time.Minute); err != nil {
		return err
	}
	one := b.spec()
	one.clients = 1
	if err := run(scE2EOne, one, b.e2eWaitUnit(c, "e2e-one")); err != nil {
		return err
	}
	if workerProfile != nil {
		pr, err := workerProfile(b.timed[scE2EWait])
		if err != nil {
			pr.Err = err.Error()
		}
		b.profiles["worker "+scE2EWait] = pr
	}
	if err := b.waitOperations(ctx, 2*time.Minute); err != nil {
		return err
	}
	if err := run(scAccept, b.spec(), b.acceptUnit(c, "accept")); err != nil {
		return err
	}
	b.drain = b.measureDrain(ctx)

	// The api alone: the worker stopped, so that the accepts have both
	// cores to themselves (their backlog is left in the queue).
	b.step("stop the worker")
	b.workerP.stop(15 * time.Second)
	return run(scAcceptAlone, b.spec(), b.acceptUnit(c, "alone"))
}

// measureDrain waits for the worker to finish what the accept scenario
// queued faster than it could run: its throughput with a full queue.
func (b *bench) measureDrain(ctx context.Context) drainResult {
	var d drainResult
	count := func() int {
		var n int
		b.db.QueryRowContext(ctx, countUnfinished).Scan(&n)
		return n
	}
	d.Backlog = count()
	b.step(fmt.Sprintf("the worker drains the accept scenario's backlog of %d operations (at most %s)", d.Backlog, b.opts.drainMax))
	t0 := time.Now()
	err := b.waitOperations(ctx, b.opts.drainMax)
	d.Elapsed = time.Since(t0)
	d.Done = d.Backlog - count()
	if err != nil {
		d.Err = err.Error()
	}
	return d
}
