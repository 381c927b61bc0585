package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hibiken/asynq"
)

// The references: what this machine allows, measured in the same run by
// tools we did not write.

// refResults holds every reference's measurement.
type refResults struct {
	pgbench      result
	pgbenchErr   string
	asynqClosed  result // one task in flight per client, as in end-to-end
	asynqOpen    result // producers flat out: the queue's ceiling
	asynqEnqueue result // the enqueue calls of the open run
	asynqErr     string
	gin          result
	ginErr       string
}

// runReferences measures pgbench, raw Asynq and a bare Gin handler while
// mocd's api and worker are stopped.
func (b *bench) runReferences(ctx context.Context) error {
	b.step("reference: pgbench running the statements of one accept (bench/accept.sql)")
	if err := b.runPgbench(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.refs.pgbenchErr = err.Error()
		fmt.Fprintf(os.Stderr, "mocdbench: pgbench reference skipped: %v\n", err)
	}
	b.step("reference: raw Asynq enqueue + process of no-op tasks")
	if err := b.runAsynq(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.refs.asynqErr = err.Error()
		fmt.Fprintf(os.Stderr, "mocdbench: asynq reference failed: %v\n", err)
	}
	b.step("reference: a bare Gin handler answering a constant")
	if err := b.runGin(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.refs.ginErr = err.Error()
		fmt.Fprintf(os.Stderr, "mocdbench: gin reference failed: %v\n", err)
	}
	return nil
}

// pgbenchScript is the script's path, relative to the repository root.
const pgbenchScript = "bench/accept.sql"

// runPgbench runs bench/accept.sql on a database of its own on the same
// server (mocd's worker would otherwise carry out the operations it
// inserts), with as many clients as the HTTP scenarios and per-transaction
// logs for the percentiles.
func (b *bench) runPgbench(ctx context.Context) error {
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		return errors.New("pgbench not found on PATH (Debian: apt-get install postgresql-client)")
	}
	script, err := filepath.Abs(pgbenchScript)
	if err != nil {
		return err
	}
	dbURL, drop, err := createDatabase(ctx, "mocd_bench_pgb_")
	if err != nil {
		return err
	}
	defer drop()
	if err := b.mocdRun(ctx, b.mocdEnv(dbURL, b.redis, ""), nil, "migrate"); err != nil {
		return err
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, `
		INSERT INTO accounts (id, email, plan) VALUES ('acct_pgbench', 'pgbench@example.com', 'business');
		INSERT INTO api_keys (id, account_id, name, prefix, secret_hash, scopes)
			VALUES ('key_pgbench', 'acct_pgbench', 'admin', 'moc_key_pgbench', '\x00', '{instance:write}');
		INSERT INTO instances (id, account_id, subdomain, status, fly_region)
			SELECT 'inst_pgb_' || g, 'acct_pgbench', 'pgb-' || g, 'running', 'iad'
			FROM generate_series(0, `+strconv.Itoa(b.opts.clients-1)+`) AS g;`)
	db.Close()
	if err != nil {
		return fmt.Errorf("seed the pgbench database: %w", err)
	}
	logDir, err := os.MkdirTemp("", "mocdbench-pgbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(logDir)
	total := b.opts.warmup + b.opts.duration
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "-n", "-M", "extended", "-c", strconv.Itoa(b.opts.clients), "-j", "2",
		"-T", strconv.Itoa(int(total.Seconds()+0.5)), "-f", script, "-l", "--log-prefix", filepath.Join(logDir, "pgb"), dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(b.outDir, "pgbench.txt"), out, 0o644); err != nil {
		return err
	}
	// Each log line: client_id transaction_no latency_us script_no epoch_s epoch_us.
	from := start.Add(b.opts.warmup)
	to := from.Add(b.opts.duration)
	files, _ := filepath.Glob(filepath.Join(logDir, "pgb*"))
	var res result
	for _, f := range files {
		if err := readPgbenchLog(f, from, to, &res); err != nil {
			return err
		}
	}
	if res.Units == 0 {
		return fmt.Errorf("pgbench logged no transactions:\n%s", out)
	}
	// The window is the measured part of pgbench's own run, which may have
	// started a little after start.
	res.Elapsed = b.opts.duration
	sortDurations(res.Latencies)
	b.refs.pgbench = res
	return nil
}

func readPgbenchLog(path string, from, to time.Time, res *result) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		lat, _ := strconv.ParseInt(fields[2], 10, 64)
		sec, _ := strconv.ParseInt(fields[4], 10, 64)
		usec, _ := strconv.ParseInt(fields[5], 10, 64)
		done := time.Unix(sec, usec*1000)
		began := done.Add(-time.Duration(lat) * time.Microsecond)
		if began.Before(from) || done.After(to) {
			continue
		}
		res.Units++
		res.Requests++
		res.Latencies = append(res.Latencies, time.Duration(lat)*time.Microsecond)
	}
	return sc.Err()
}

// asynqQueue is the references' own queue, in Redis database 1 of the
// same redis-server, so nothing of mocd's is touched.
const asynqQueue = "bench"

// runAsynq measures Asynq itself on the same Redis: no-op tasks enqueued
// by an asynq.Client and processed by an asynq.Server configured as mocd's
// worker is (concurrency 20, 100ms poll interval). Closed loop: each of
// the clients enqueues one task and waits until it has been processed, as
// the end-to-end scenario does with operations. Open: producers enqueue
// flat out, and what the server processes is the queue's ceiling.
func (b *bench) runAsynq(ctx context.Context) error {
	ropt := asynq.RedisClientOpt{Addr: b.redis, DB: 1}
	defer b.rdbDB1Flush(ctx)
	var waiting sync.Map // task payload → chan struct{}
	var processed atomic.Int64
	mux := asynq.NewServeMux()
	mux.HandleFunc("bench:noop", func(ctx context.Context, t *asynq.Task) error {
		processed.Add(1)
		if ch, ok := waiting.LoadAndDelete(string(t.Payload())); ok {
			close(ch.(chan struct{}))
		}
		return nil
	})
	srv := asynq.NewServer(ropt, asynq.Config{
		Concurrency:              20,
		Queues:                   map[string]int{asynqQueue: 1},
		TaskCheckInterval:        100 * time.Millisecond,
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		LogLevel:                 asynq.WarnLevel,
	})
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("start asynq server: %w", err)
	}
	defer srv.Shutdown()
	client := asynq.NewClient(ropt)
	defer client.Close()
	spec := loadSpec{clients: b.opts.clients, warmup: b.opts.warmup, duration: b.opts.duration}
	var seq atomic.Int64

	b.refs.asynqClosed = drive(ctx, spec, func(ctx context.Context, w, i int) outcome {
		key := "c" + strconv.FormatInt(seq.Add(1), 10)
		done := make(chan struct{})
		waiting.Store(key, done)
		if _, err := client.EnqueueContext(ctx, asynq.NewTask("bench:noop", []byte(key)), asynq.Queue(asynqQueue)); err != nil {
			waiting.Delete(key)
			return outcome{requests: 1, err: err}
		}
		select {
		case <-done:
			return outcome{ok: true, requests: 1}
		case <-time.After(30 * time.Second):
			return outcome{requests: 1, err: errors.New("task not processed within 30s")}
		case <-ctx.Done():
			return outcome{requests: 1, err: ctx.Err()}
		}
	}, nil)
	if b.refs.asynqClosed.Units == 0 {
		return fmt.Errorf("no task processed: %s", b.refs.asynqClosed.FirstErr)
	}

	// Open: count what the server finishes inside the window.
	from := make(chan int64, 1)
	go func() {
		select {
		case <-time.After(b.opts.warmup):
			from <- processed.Load()
		case <-ctx.Done():
			from <- 0
		}
	}()
	b.refs.asynqEnqueue = drive(ctx, spec, func(ctx context.Context, w, i int) outcome {
		key := "o" + strconv.FormatInt(seq.Add(1), 10)
		_, err := client.EnqueueContext(ctx, asynq.NewTask("bench:noop", []byte(key)), asynq.Queue(asynqQueue))
		return outcome{ok: err == nil, requests: 1, err: err}
	}, nil)
	n := int(processed.Load() - <-from)
	b.refs.asynqOpen = result{Units: n, Requests: n, Elapsed: b.refs.asynqEnqueue.Elapsed}
	return nil
}

// rdbDB1Flush empties Redis database 1 after the Asynq reference.
func (b *bench) rdbDB1Flush(ctx context.Context) {
	c := b.rdb.Conn()
	defer c.Close()
	c.Select(ctx, 1)
	c.FlushDB(ctx)
}

// ginBody is what the bare handler answers: an Operation's JSON, so that
// the bytes on the wire match a poll's.
var ginBody = []byte(`{"id":"op_5gH7kLmN2pQrStUvWxYz0a","type":"instance.restart","status":"succeeded","instance_id":"inst_5gH7kLmN2pQrStUvWxYz0a","created_at":"2025-01-01T00:00:00.000000Z","started_at":"2025-01-01T00:00:00.010000Z","finished_at":"2025-01-01T00:00:00.020000Z","error":null}`)

// serveGin is the bare Gin reference, run as a process of its own (as the
// api is): gin.New() in release mode, one route answering a constant.
func serveGin(ctx context.Context, addr string) error {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.GET("/api/v1/operations/:id", func(c *gin.Context) {
		c.Data(http.StatusOK, "application/json; charset=utf-8", ginBody)
	})
	srv := &http.Server{Addr: addr, Handler: e, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// runGin drives the bare Gin process with the poll scenario's client code.
func (b *bench) runGin(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	p, err := startProc(b.outDir, "gin", nil, b.self, "serve-gin", addr)
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	base := "http://" + addr
	if err := waitHTTP(ctx, p, base+"/api/v1/operations/op_x"); err != nil {
		return err
	}
	c := newHTTPClient(base, b.opts.clients)
	defer c.close()
	groups := func() map[string][]int { return map[string][]int{"gin": {p.pid()}, "harness": {os.Getpid()}} }
	b.refs.gin = drive(ctx, b.spec(), func(ctx context.Context, w, i int) outcome {
		r, err := c.do(ctx, http.MethodGet, "/api/v1/operations/op_5gH7kLmN2pQrStUvWxYz0a", "moc_token", "", nil)
		return single(r, err, http.StatusOK)
	}, groups)
	if b.refs.gin.Units == 0 {
		return fmt.Errorf("no answer: %s", b.refs.gin.FirstErr)
	}
	return nil
}
