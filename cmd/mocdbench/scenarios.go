package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Scenario names, in the order of the report.
const (
	scAccept = "accept"
	// scAcceptAlone is accept with the worker stopped: the api's own
	// throughput, beside pgbench doing its statements.
	scAcceptAlone = "accept, api alone"
	scReplay      = "replay"
	scPoll        = "poll"
	scList        = "list"
	scE2E         = "end-to-end"
	scE2EWait     = "end-to-end with wait"
	// scE2EOne is end-to-end with wait with ONE client: one operation in
	// flight in the whole system, so its latency is the pipeline's own,
	// with no queueing for the machine's two cores.
	scE2EOne   = "end-to-end with wait, one client"
	scPage1    = "operations page 1"
	scPage1000 = "operations page 1000"
)

// scenarioOrder is the order of the report's rows.
var scenarioOrder = []string{scAccept, scAcceptAlone, scReplay, scPoll, scList, scE2E, scE2EWait, scE2EOne, scPage1, scPage1000}

// isE2E reports whether a scenario's unit is a whole operation, accept to
// succeeded, rather than one request.
func isE2E(name string) bool { return name == scE2E || name == scE2EWait || name == scE2EOne }

// own returns client w's accounts: each client has accounts of its own, so
// that no two clients lock the same instance row or share a rate limit.
func (b *bench) own(w int) []*ident {
	a := b.opts.accountsPerClient
	return b.idents[w*a : (w+1)*a]
}

// pick is the account and key of client w's unit i: accounts round-robin,
// then keys, so load spreads evenly over every bucket of the limiter.
func (b *bench) pick(w, i int) (*ident, string, int) {
	own := b.own(w)
	id := own[i%len(own)]
	j := i / len(own)
	return id, id.tokens[j%len(id.tokens)], j
}

// acceptUnit restarts one of the client's instances with a fresh
// Idempotency-Key: the full accept path, ending in an enqueued task.
func (b *bench) acceptUnit(c *httpClient, tag string) unitFunc {
	return func(ctx context.Context, w, i int) outcome {
		id, tok, j := b.pick(w, i)
		inst := id.instances[j%len(id.instances)]
		r, err := c.do(ctx, http.MethodPost, "/api/v1/instances/"+inst+"/restart", tok, fmt.Sprintf("%s-%d-%d", tag, w, i), nil)
		return single(r, err, http.StatusAccepted)
	}
}

// replayUnit repeats an already answered request with its key.
func (b *bench) replayUnit(c *httpClient) unitFunc {
	return func(ctx context.Context, w, i int) outcome {
		id, tok, _ := b.pick(w, i)
		r, err := c.do(ctx, http.MethodPost, id.setupPath, tok, id.setupIdemp, nil)
		o := single(r, err, http.StatusAccepted)
		if o.ok && r.header.Get("Idempotent-Replayed") != "true" {
			o.ok, o.err = false, errors.New("a 202 without Idempotent-Replayed: true")
		}
		return o
	}
}

// pollUnit reads one operation, as a dashboard polling it does.
func (b *bench) pollUnit(c *httpClient) unitFunc {
	return func(ctx context.Context, w, i int) outcome {
		id, tok, _ := b.pick(w, i)
		r, err := c.do(ctx, http.MethodGet, "/api/v1/operations/"+id.setupOp, tok, "", nil)
		return single(r, err, http.StatusOK)
	}
}

// listUnit lists the account's instances.
func (b *bench) listUnit(c *httpClient) unitFunc {
	return func(ctx context.Context, w, i int) outcome {
		_, tok, _ := b.pick(w, i)
		r, err := c.do(ctx, http.MethodGet, "/api/v1/instances", tok, "", nil)
		return single(r, err, http.StatusOK)
	}
}

// pageUnit reads one page of the scale account's operations.
func (b *bench) pageUnit(c *httpClient, cursor string) unitFunc {
	path := "/api/v1/operations"
	if cursor != "" {
		path += "?cursor=" + url.QueryEscape(cursor)
	}
	return func(ctx context.Context, w, i int) outcome {
		tok := b.scale.tokens[(w+i)%len(b.scale.tokens)]
		r, err := c.do(ctx, http.MethodGet, path, tok, "", nil)
		return single(r, err, http.StatusOK)
	}
}

// operationJSON is the part of an Operation the harness reads.
type operationJSON struct {
	ID         string     `json:"id"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// e2eUnit restarts one of the client's instances and polls the operation
// every pollEvery until it has finished: one unit is one operation. The
// client never has more than one operation in flight, so the worker is
// offered at most one per client and keeps up by construction.
func (b *bench) e2eUnit(c *httpClient, tag string, pollEvery time.Duration) unitFunc {
	return b.operationUnit(c, tag, opFollow{suffix: "", pause: pollEvery, limitedPause: 0, limit: 60 * time.Second})
}

// e2eWaitUnit is e2eUnit with GET /operations/:id/wait?timeout=55 in
// place of the polling loop: the answer comes when the operation commits,
// so one wait is usually all it takes.
func (b *bench) e2eWaitUnit(c *httpClient, tag string) unitFunc {
	return b.operationUnit(c, tag, opFollow{suffix: "/wait?timeout=55", pause: 0, limitedPause: time.Second, limit: 120 * time.Second})
}

// opFollow is how an end-to-end unit follows its operation: the path
// suffix of each read, the pause before each read and after a 429, and
// how long it may take in all.
type opFollow struct {
	suffix              string
	pause, limitedPause time.Duration
	limit               time.Duration
}

// operationUnit restarts one of the client's instances, then reads the
// operation as f says until it has finished; the outcome carries the
// server-recorded latency.
func (b *bench) operationUnit(c *httpClient, tag string, f opFollow) unitFunc {
	sleep := func(ctx context.Context, d time.Duration) error {
		if d <= 0 {
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	return func(ctx context.Context, w, i int) outcome {
		id, tok, j := b.pick(w, i)
		inst := id.instances[j%len(id.instances)]
		r, err := c.do(ctx, http.MethodPost, "/api/v1/instances/"+inst+"/restart", tok, fmt.Sprintf("%s-%d-%d", tag, w, i), nil)
		o := single(r, err, http.StatusAccepted)
		if !o.ok {
			return o
		}
		var op operationJSON
		if err := json.Unmarshal(r.body, &op); err != nil {
			o.ok, o.err = false, err
			return o
		}
		deadline := time.Now().Add(f.limit)
		for {
			if time.Now().After(deadline) {
				o.ok, o.err = false, fmt.Errorf("operation %s unfinished after %s", op.ID, f.limit)
				return o
			}
			if err := sleep(ctx, f.pause); err != nil {
				o.ok, o.err = false, err
				return o
			}
			r, err := c.do(ctx, http.MethodGet, "/api/v1/operations/"+op.ID+f.suffix, tok, "", nil)
			p := single(r, err, http.StatusOK)
			o.requests++
			o.limited += p.limited
			if !p.ok {
				if p.limited > 0 {
					if err := sleep(ctx, f.limitedPause); err != nil {
						o.ok, o.err = false, err
						return o
					}
					continue
				}
				o.ok, o.err, o.status = false, p.err, p.status
				return o
			}
			var got operationJSON
			if err := json.Unmarshal(r.body, &got); err != nil {
				o.ok, o.err = false, err
				return o
			}
			switch got.Status {
			case "succeeded":
				if got.FinishedAt != nil && got.StartedAt != nil {
					o.serverLatency = got.FinishedAt.Sub(got.CreatedAt)
					o.serverQueued = got.StartedAt.Sub(got.CreatedAt)
				}
				return o
			case "failed", "cancelled":
				o.ok, o.err = false, fmt.Errorf("operation %s %s", op.ID, got.Status)
				return o
			}
		}
	}
}

// walkPages follows next_cursor from the first page of the scale
// account's operations to page n, returning page n's cursor. Cursors are
// sealed by the server, so the only way to page 1000 is to walk there;
// each step is measured as one request.
func (b *bench) walkPages(ctx context.Context, c *httpClient, n int) (string, result, error) {
	cursor := ""
	var res result
	t0 := time.Now()
	for page := 1; page < n; page++ {
		path := "/api/v1/operations"
		if cursor != "" {
			path += "?cursor=" + url.QueryEscape(cursor)
		}
		tok := b.scale.tokens[page%len(b.scale.tokens)]
		s := time.Now()
		var p struct {
			Data       []json.RawMessage `json:"data"`
			NextCursor *string           `json:"next_cursor"`
		}
		r, err := c.doJSON(ctx, http.MethodGet, path, tok, "", nil, &p)
		res.Requests++
		res.Units++
		if r.status == http.StatusTooManyRequests {
			res.Limited++
		}
		if err != nil {
			return "", res, fmt.Errorf("walk to page %d: at page %d: %w", n, page, err)
		}
		res.Latencies = append(res.Latencies, time.Since(s))
		if p.NextCursor == nil {
			return "", res, fmt.Errorf("walk to page %d: page %d is the last", n, page)
		}
		cursor = *p.NextCursor
	}
	res.Elapsed = time.Since(t0)
	sortDurations(res.Latencies)
	return cursor, res, nil
}
