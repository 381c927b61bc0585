package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// httpClient is the one HTTP client of every scenario and of the bare-Gin
// reference: net/http with keep-alive, a connection per concurrent client.
type httpClient struct {
	base string
	hc   *http.Client
}

func newHTTPClient(base string, conns int) *httpClient {
	tr := &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httpClient{base: base, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *httpClient) close() { c.hc.CloseIdleConnections() }

// reply is an answer read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request; token and idemKey are optional.
func (c *httpClient) do(ctx context.Context, method, path, token, idemKey string, body []byte) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: res.StatusCode, header: res.Header, body: b}, nil
}

// doJSON sends a request and decodes a 2xx answer into out.
func (c *httpClient) doJSON(ctx context.Context, method, path, token, idemKey string, in, out any) (reply, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return reply{}, err
		}
	}
	r, err := c.do(ctx, method, path, token, idemKey, body)
	if err != nil {
		return r, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if r.status/100 != 2 {
		return r, fmt.Errorf("%s %s: %d %s", method, path, r.status, bytes.TrimSpace(r.body))
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			return r, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return r, nil
}

// outcome is what one unit of a scenario did: usually one request; for the
// end-to-end scenario one whole operation (its accept and polls).
type outcome struct {
	ok       bool
	status   int // the last HTTP status seen (0 on a transport error)
	limited  int // 429 answers among the requests
	requests int
	err      error
	// serverLatency, when set, is the latency the server recorded
	// (an operation's finished_at - created_at).
	serverLatency time.Duration
	// serverQueued is the part of it before a worker started the
	// operation (started_at - created_at).
	serverQueued time.Duration
}

// unitFunc performs unit i of client w.
type unitFunc func(ctx context.Context, w, i int) outcome

// loadSpec says how long to drive a scenario and with how many clients.
type loadSpec struct {
	clients  int
	warmup   time.Duration
	duration time.Duration
	// maxUnits, when positive, ends the run after that many units
	// (warm-up units excluded); duration then only bounds it.
	maxUnits int
}

// result is a scenario's measurement.
type result struct {
	Units     int
	Requests  int
	Errors    int
	Limited   int
	Elapsed   time.Duration
	Latencies []time.Duration // sorted
	Server    []time.Duration // sorted; server-recorded latencies
	Queued    []time.Duration // sorted; server-recorded time before a worker started
	FirstErr  string
	CPU       cpuUse
}

// merge is r and o measured one after the other: their units, time and
// CPU added, their latencies pooled.
func (r result) merge(o result) result {
	out := result{
		Units: r.Units + o.Units, Requests: r.Requests + o.Requests,
		Errors: r.Errors + o.Errors, Limited: r.Limited + o.Limited,
		Elapsed:   r.Elapsed + o.Elapsed,
		Latencies: pooled(r.Latencies, o.Latencies),
		Server:    pooled(r.Server, o.Server),
		Queued:    pooled(r.Queued, o.Queued),
		FirstErr:  cmp.Or(r.FirstErr, o.FirstErr),
		CPU:       r.CPU.add(o.CPU),
	}
	return out
}

// pooled is a and b, sorted.
func pooled(a, b []time.Duration) []time.Duration {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := slices.Concat(a, b)
	slices.Sort(out)
	return out
}

// PerSec is successful units per second.
func (r result) PerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Units-r.Errors) / r.Elapsed.Seconds()
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// drive runs unit in spec.clients goroutines: spec.warmup unmeasured, then
// spec.duration (or spec.maxUnits units) measured. Only units that start
// and finish inside the measured window count. cpu, when set, samples CPU
// at the edges of the window.
func drive(ctx context.Context, spec loadSpec, unit unitFunc, cpu cpuGroups) result {
	start := time.Now()
	measureFrom := start.Add(spec.warmup)
	measureTo := measureFrom.Add(spec.duration)
	var issued atomic.Int64
	type clientResult struct {
		lat, server []time.Duration
		queued      []time.Duration
		units, reqs int
		errs, limit int
		firstErr    string
	}
	results := make([]clientResult, spec.clients)
	// CPU is sampled at the edges of the measured window, or when the
	// clients finish early (maxUnits).
	finished := make(chan struct{})
	cpuDone := make(chan cpuUse, 1)
	go func() {
		if cpu == nil {
			cpuDone <- cpuUse{}
			return
		}
		select {
		case <-time.After(time.Until(measureFrom)):
		case <-finished:
		}
		a := takeCPU(cpu)
		select {
		case <-time.After(time.Until(measureTo)):
		case <-finished:
		}
		cpuDone <- cpuBetween(a, takeCPU(cpu))
	}()
	var wg sync.WaitGroup
	for w := range spec.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr := &results[w]
			for i := 0; ; i++ {
				t0 := time.Now()
				if t0.After(measureTo) || ctx.Err() != nil {
					return
				}
				measured := !t0.Before(measureFrom)
				if measured && spec.maxUnits > 0 && issued.Add(1) > int64(spec.maxUnits) {
					return
				}
				out := unit(ctx, w, i)
				t1 := time.Now()
				if !measured || t1.After(measureTo) {
					continue
				}
				cr.units++
				cr.reqs += out.requests
				cr.limit += out.limited
				if !out.ok {
					cr.errs++
					if cr.firstErr == "" {
						if out.err != nil {
							cr.firstErr = out.err.Error()
						} else {
							cr.firstErr = fmt.Sprintf("status %d", out.status)
						}
					}
					continue
				}
				cr.lat = append(cr.lat, t1.Sub(t0))
				if out.serverLatency > 0 {
					cr.server = append(cr.server, out.serverLatency)
					cr.queued = append(cr.queued, out.serverQueued)
				}
			}
		}()
	}
	wg.Wait()
	end := time.Now()
	if end.After(measureTo) {
		end = measureTo
	}
	close(finished)
	var res result
	for _, cr := range results {
		res.Units += cr.units
		res.Requests += cr.reqs
		res.Errors += cr.errs
		res.Limited += cr.limit
		res.Latencies = append(res.Latencies, cr.lat...)
		res.Server = append(res.Server, cr.server...)
		res.Queued = append(res.Queued, cr.queued...)
		if res.FirstErr == "" {
			res.FirstErr = cr.firstErr
		}
	}
	res.Elapsed = end.Sub(measureFrom)
	res.CPU = <-cpuDone
	slices.Sort(res.Latencies)
	slices.Sort(res.Server)
	slices.Sort(res.Queued)
	return res
}

// single is the outcome of a plain request expecting status want.
func single(r reply, err error, want int) outcome {
	o := outcome{requests: 1, status: r.status, err: err}
	if err != nil {
		return o
	}
	if r.status == http.StatusTooManyRequests {
		o.limited = 1
	}
	o.ok = r.status == want
	if !o.ok {
		o.err = fmt.Errorf("status %d: %s", r.status, truncate(string(bytes.TrimSpace(r.body)), 200))
	}
	return o
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func sortDurations(d []time.Duration) { slices.Sort(d) }
