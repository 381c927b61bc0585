// Command mocdbench is mocd's load harness (`make bench`). It measures what
// one node sustains against the floor of its own machine, side by side in
// one run: it builds mocd, starts it on a fresh database and a private
// redis-server (`mocd flysim` with FLYSIM_DELAY=0, `mocd worker`,
// `mocd api`, each a process of its own), seeds accounts and instances,
// drives the API over HTTP with a fixed number of concurrent clients, and
// measures in the same run the references that bound each scenario:
// pgbench doing an accept's statements, raw Asynq, and a bare Gin handler.
// It counts Postgres and Redis round trips per request on the wire, takes
// CPU profiles of the api, prints a table and writes BENCHMARKS.md.
//
//	go run ./cmd/mocdbench [-clients 16] [-duration 10s] [-out BENCHMARKS.md]
//
// Everything it starts it stops, on success, failure or Ctrl-C, and the
// database it created is dropped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mocdbench:", err)
		os.Exit(1)
	}
}

// run dispatches: the harness itself, or one of the processes it starts
// from its own binary.
func run(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "serve-gin":
			if len(args) != 2 {
				return errors.New("usage: mocdbench serve-gin host:port")
			}
			return serveGin(ctx, args[1])
		}
	}
	opts, err := parseOptions(args, os.Stderr)
	if err != nil {
		return err
	}
	return runBench(ctx, opts)
}

// options are the run's settings; the defaults fit `make bench` in well
// under ten minutes on a 2-core machine.
type options struct {
	clients             int
	warmup, duration    time.Duration
	accountsPerClient   int
	keysPerAccount      int
	instancesPerAccount int
	pollEvery           time.Duration
	scaleOps            int
	pageUnits           int
	countUnits          int
	countE2E            int
	drainMax            time.Duration
	profile             bool
	out                 string
	outDir              string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mocdbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.clients, "clients", 16, "concurrent HTTP clients (and pgbench clients)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up of each timed scenario")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each timed scenario")
	fs.IntVar(&o.accountsPerClient, "accounts-per-client", 3, "business accounts each client spreads its requests over (rate limits are per account)")
	fs.IntVar(&o.keysPerAccount, "keys-per-account", 3, "API keys per account (rate limits are per key too)")
	fs.IntVar(&o.instancesPerAccount, "instances-per-account", 3, "instances per account")
	fs.DurationVar(&o.pollEvery, "poll-every", 20*time.Millisecond, "end-to-end: pause between two polls of an operation")
	fs.IntVar(&o.scaleOps, "scale-ops", 1_000_000, "operations stored for the scale account")
	fs.IntVar(&o.pageUnits, "page-requests", 1200, "requests of each page scenario (one account: within its 1,500/min)")
	fs.IntVar(&o.countUnits, "count-requests", 100, "requests per scenario in the counting pass")
	fs.IntVar(&o.countE2E, "count-operations", 30, "end-to-end operations in the counting pass")
	fs.DurationVar(&o.drainMax, "drain-max", 90*time.Second, "longest wait for the worker to work off the accept backlog")
	fs.BoolVar(&o.profile, "profile", true, "take CPU profiles of the api (poll and accept)")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "report file")
	fs.StringVar(&o.outDir, "out-dir", "bench/out", "logs, profiles and the mocd binary (git-ignored)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.clients < 1 || o.accountsPerClient < 1 || o.keysPerAccount < 1 || o.instancesPerAccount < 1 {
		return o, errors.New("clients, accounts, keys and instances must be at least 1")
	}
	if o.duration < time.Second {
		return o, errors.New("-duration must be at least 1s")
	}
	return o, nil
}

func runBench(ctx context.Context, opts options) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root (make bench)")
	}
	b := &bench{
		opts:      opts,
		started:   time.Now(),
		outDir:    opts.outDir,
		counted:   map[string]countResult{},
		timed:     map[string]result{},
		profiles:  map[string]profileResult{},
		seedTimes: map[string]time.Duration{},
	}
	defer func() {
		b.step("stopping everything this run started")
		b.clean.run()
	}()
	info := machineInfo(ctx)
	if err := b.setup(ctx); err != nil {
		return err
	}

	b.step("start api and worker behind counting proxies")
	if err := b.startSystem(ctx, true); err != nil {
		return err
	}
	if err := b.seed(ctx); err != nil {
		return err
	}
	if err := b.countAll(ctx); err != nil {
		return err
	}
	b.stopSystem()

	if err := b.runReferences(ctx); err != nil {
		return err
	}

	b.step("start api and worker connected directly")
	if err := b.startSystem(ctx, false); err != nil {
		return err
	}
	if err := b.runTimed(ctx); err != nil {
		return err
	}
	if opts.profile {
		b.step("profile: poll, the api's CPU profile from its MOC_DEBUG_LISTEN")
		b.profiles[scPoll] = b.profileRun(ctx, scPoll, b.pollUnit)
		b.step("profile: accept (worker stopped), the api's CPU profile")
		b.profiles[scAccept] = b.profileRun(ctx, scAccept, func(c *httpClient) unitFunc { return b.acceptUnit(c, "profile") })
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// The references once more, after the scenarios (refs.go says why).
	b.stopSystem()
	b.refPasses[0] = b.refs
	b.refs = refResults{}
	if err := b.runReferences(ctx); err != nil {
		return err
	}
	b.refPasses[1] = b.refs
	b.refs = b.refPasses[0].merged(b.refPasses[1])
	info.LoadAfter = loadAverage()
	report, err := b.report(info)
	fmt.Println(b.summaryTable())
	if err != nil {
		return fmt.Errorf("render %s: %w", opts.out, err)
	}
	if err := os.WriteFile(opts.out, []byte(report), 0o644); err != nil {
		return err
	}
	b.step("wrote " + opts.out)
	return nil
}
