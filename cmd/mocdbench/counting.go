package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"time"

	"github.com/myopenclaw/mocd/internal/wirecount"
)

// countResult is one counting pass: units done by one client, one after
// the other, and what each proxy saw meanwhile.
type countResult struct {
	Units    int
	Requests int
	Elapsed  time.Duration
	Per      map[string]wirecount.Counts // proxy name → counts during the pass
}

func (b *bench) snapshot() map[string]wirecount.Counts {
	m := map[string]wirecount.Counts{}
	for name, w := range b.proxies {
		m[name] = w.Snapshot()
	}
	return m
}

// countPass runs units units of unit, then settle (for instance: wait for
// the worker to finish what they queued), and records the proxies' deltas.
func (b *bench) countPass(ctx context.Context, name string, units int, unit unitFunc, settle func() error) error {
	if err := b.resetRateLimits(ctx); err != nil {
		return err
	}
	before := b.snapshot()
	t0 := time.Now()
	res := countResult{Units: units, Per: map[string]wirecount.Counts{}}
	for i := range units {
		o := unit(ctx, 0, i)
		res.Requests += o.requests
		if !o.ok {
			return fmt.Errorf("counting pass %s: unit %d: %v", name, i, o.err)
		}
	}
	if settle != nil {
		if err := settle(); err != nil {
			return err
		}
	}
	res.Elapsed = time.Since(t0)
	after := b.snapshot()
	for k := range after {
		res.Per[k] = after[k].Sub(before[k])
	}
	b.counted[name] = res
	return nil
}

// countAll runs the counting pass of every scenario against the counted
// system (api and worker behind the proxies).
func (b *bench) countAll(ctx context.Context) error {
	b.step("counting pass: Postgres and Redis round trips per request, one client")
	// The idle rate shows the worker's own polling, which runs whether or
	// not there is work, and is in every worker figure.
	before := b.snapshot()
	b.idleFor = 3 * time.Second
	select {
	case <-time.After(b.idleFor):
	case <-ctx.Done():
		return ctx.Err()
	}
	after := b.snapshot()
	b.idle = map[string]wirecount.Counts{}
	for k := range after {
		b.idle[k] = after[k].Sub(before[k])
	}

	c := newHTTPClient(b.apiURL, 2)
	defer c.close()
	n := b.opts.countUnits
	drained := func() error { return b.waitOperations(ctx, 2*time.Minute) }
	if err := b.countPass(ctx, scList, n, b.listUnit(c), nil); err != nil {
		return err
	}
	if err := b.countPass(ctx, scPoll, n, b.pollUnit(c), nil); err != nil {
		return err
	}
	if err := b.countPass(ctx, scReplay, n, b.replayUnit(c), nil); err != nil {
		return err
	}
	if err := b.resetRateLimits(ctx); err != nil {
		return err
	}
	cursor, _, err := b.walkPages(ctx, c, 1000)
	if err != nil {
		return err
	}
	b.deepCursor = cursor
	if err := b.countPass(ctx, scPage1, n, b.pageUnit(c, ""), nil); err != nil {
		return err
	}
	if err := b.countPass(ctx, scPage1000, n, b.pageUnit(c, b.deepCursor), nil); err != nil {
		return err
	}
	// Accept: every operation on an instance of its own, so that the
	// worker's share per operation is not inflated by operations waiting
	// for an earlier one of their instance.
	type target struct{ tok, inst string }
	var targets []target
	for _, id := range b.idents {
		for _, inst := range id.instances {
			targets = append(targets, target{id.tokens[0], inst})
		}
	}
	accepts := min(n, len(targets))
	err = b.countPass(ctx, scAccept, accepts, func(ctx context.Context, w, i int) outcome {
		t := targets[i]
		r, err := c.do(ctx, http.MethodPost, "/api/v1/instances/"+t.inst+"/restart", t.tok, fmt.Sprintf("count-accept-%d", i), nil)
		return single(r, err, http.StatusAccepted)
	}, drained)
	if err != nil {
		return err
	}
	if err := b.countPass(ctx, scE2E, b.opts.countE2E, b.e2eUnit(c, "count-e2e", b.opts.pollEvery), drained); err != nil {
		return err
	}
	if err := b.countPass(ctx, scE2EWait, b.opts.countE2E, b.e2eWaitUnit(c, "count-e2e-wait"), drained); err != nil {
		return err
	}
	b.checkScripts()
	return nil
}

// checkScripts warns when a pgbench script no longer has as many
// statements as the api sends for its request: the store changed and the
// script must follow, or the reference measures something else.
func (b *bench) checkScripts() {
	for script, name := range map[string]string{pgbenchScript: scAccept, pgbenchPollScript: scPoll} {
		src, err := os.ReadFile(script)
		c, ok := b.counted[name]
		if err != nil || !ok || c.Requests == 0 {
			continue
		}
		sent := float64(c.Per["api-pg"].Statements()) / float64(c.Requests)
		// The api's periodic flush of key uses adds a statement every few
		// seconds: a few hundredths per request.
		if n := scriptStatements(src); math.Abs(sent-float64(n)) > 0.2 {
			fmt.Fprintf(os.Stderr, "mocdbench: WARNING: %s has %d statements but the api sent %.2f per %s request; update the script from store/\n", script, n, sent, name)
		}
	}
}
