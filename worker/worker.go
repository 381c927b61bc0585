// Package worker carries out what the api accepted: an Asynq server whose
// lifecycle handler drives the Fly Machines API for each operation, an
// outbox relay that re-enqueues any accepted operation whose task Redis
// lost, and a reconciler that repairs drift between instances and their
// machines. Postgres, not Redis, says what is done: every handler reads the
// operation first and may run any number of times.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
	"github.com/myopenclaw/mocd/webhook"
)

// Defaults of Options.
const (
	// DefaultPollInterval is how often an idle worker asks Redis for new
	// tasks and moves due retries forward. Asynq's own defaults (1s and 5s)
	// would add up to seconds to every operation queued behind another;
	// 100ms costs an idle worker about 30 cheap Redis calls a second.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultRelayInterval: an operation whose task was lost waits at most
	// this long (plus one poll) before it is queued again.
	DefaultRelayInterval = time.Second
	// DefaultReconcileInterval spaces the drift checks, one Fly read per
	// settled instance each time.
	DefaultReconcileInterval = 30 * time.Second
	// DefaultMaxBackoff caps the pause before retrying a transient failure.
	DefaultMaxBackoff = 10 * time.Second
	// DefaultConcurrency is how many tasks one worker runs at once; most of
	// their time is spent waiting on Fly.
	DefaultConcurrency = 20
	// DefaultLeaseTTL: a change to a machine takes a second or two, so a
	// lease of 30 s covers it with room and delays a retry after a crash
	// by at most that much.
	DefaultLeaseTTL = 30 * time.Second
)

// Options are the worker's dependencies and settings.
type Options struct {
	Store *store.Store
	// Redis is where the queues live.
	Redis asynq.RedisConnOpt
	// Fly is the Machines API (a *fly.Client).
	Fly Fly
	// FlyOrg is the org slug apps are created in.
	FlyOrg string
	// Image is the OpenClaw image every machine runs.
	Image string
	// BaseDomain of instance URLs in webhook payloads; default
	// wire.DefaultBaseDomain.
	BaseDomain string
	Logger     *slog.Logger

	Concurrency       int
	PollInterval      time.Duration
	RelayInterval     time.Duration
	ReconcileInterval time.Duration
	MaxBackoff        time.Duration
	// ShutdownTimeout is how long Run waits for running tasks when it
	// stops; unfinished ones go back to the queue. Default 8s.
	ShutdownTimeout time.Duration
	// Retention is how long audit entries and finished operations and
	// webhook deliveries are kept (retention.go); default DefaultRetention.
	Retention time.Duration
	// Webhooks configure webhook delivery (webhooks.go).
	Webhooks WebhookOptions
	// LeaseTTL is how long the machine lease taken around each change
	// lasts; it bounds how long an abandoned lease (a worker killed
	// mid-change) holds up the next attempt. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// OnOrphanSwept, when set, is called once for every orphan the
	// reconciler destroys, with kind "app", "machine" or "volume", beside the
	// metric mocd_reconciler_orphans_swept_total (tests wait on it).
	OnOrphanSwept func(kind string)
	// Registry receives the worker's metrics (metrics.go) and its Fly
	// client's; nil counts into nothing.
	Registry prometheus.Registerer
	// Waker, when set, tells the worker of each operation the moment its
	// accept commits, so that it starts it without waiting for its next
	// Asynq poll (wake.go). Optional: the tasks alone carry every
	// operation.
	Waker Waker
	// SecretBox opens instance secrets (MOC_SECRET_KEY); default
	// Webhooks.SecretBox, which is sealed with the same key.
	SecretBox *webhook.SecretBox
	// UpgradeTimeout bounds how long a new version has to come up healthy
	// before it is rolled back (release.go); default DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration
	// HealthPoll spaces the reads of a machine's health checks; default
	// DefaultHealthPoll.
	HealthPoll time.Duration
}

// Worker is one worker process's Asynq server and periodic jobs.
type Worker struct {
	opts   Options
	log    *slog.Logger
	st     *store.Store
	fly    Fly
	client *asynq.Client
	insp   *asynq.Inspector
	mux    *asynq.ServeMux
	// deliveries serves the webhooks queue with its own Asynq server.
	deliveries *deliverer

	mu       sync.Mutex
	periodic []periodic
	metrics  *metrics
	// suspects counts, per operation, the consecutive relay passes that
	// found its task active in Redis while no worker held its instance.
	suspects map[string]int
	// orphanApps holds the moc- apps the last sweep found without a live
	// instance; one still so on the next sweep is destroyed.
	orphanApps map[string]bool
	// woken are the operations run on a wake-up right now (wake.go).
	woken wokenRuns
}

type periodic struct {
	name  string
	every time.Duration
	fn    func(context.Context) error
}

// New builds a worker; Run starts it.
func New(opts Options) *Worker {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.RelayInterval <= 0 {
		opts.RelayInterval = DefaultRelayInterval
	}
	if opts.ReconcileInterval <= 0 {
		opts.ReconcileInterval = DefaultReconcileInterval
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.UpgradeTimeout <= 0 {
		opts.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if opts.HealthPoll <= 0 {
		opts.HealthPoll = DefaultHealthPoll
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 8 * time.Second
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	w := &Worker{
		opts:     opts,
		log:      opts.Logger,
		st:       opts.Store,
		fly:      opts.Fly,
		client:   asynq.NewClient(opts.Redis),
		insp:     asynq.NewInspector(opts.Redis),
		mux:      asynq.NewServeMux(),
		suspects: map[string]int{},
		metrics:  newMetrics(opts.Registry).init([]string{"relay", "reconcile", "retention"}),
	}
	w.mux.HandleFunc(jobs.TypeOperation, w.handleOperation)
	w.deliveries = newDeliverer(w, opts.Webhooks)
	w.Every("relay", opts.RelayInterval, w.relay)
	w.Every("reconcile", opts.ReconcileInterval, w.reconcile)
	w.Every("retention", RetentionInterval, w.prune)
	return w
}

// Every runs fn every interval while the worker runs. Call it before Run.
func (w *Worker) Every(name string, interval time.Duration, fn func(context.Context) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.periodic = append(w.periodic, periodic{name: name, every: interval, fn: fn})
}

// Run serves the queues and runs the periodic jobs until ctx ends, then
// waits for running tasks up to ShutdownTimeout.
func (w *Worker) Run(ctx context.Context) error {
	defer w.client.Close()
	defer w.insp.Close()
	srv := asynq.NewServer(w.opts.Redis, asynq.Config{
		Concurrency:              w.opts.Concurrency,
		Queues:                   map[string]int{jobs.QueueLifecycle: 1},
		TaskCheckInterval:        w.opts.PollInterval,
		DelayedTaskCheckInterval: w.opts.PollInterval,
		RetryDelayFunc:           w.retryDelay,
		IsFailure:                func(err error) bool { return !errors.Is(err, errWaiting) },
		ShutdownTimeout:          w.opts.ShutdownTimeout,
		Logger:                   asynqLogger{w.log.With("component", "asynq")},
		LogLevel:                 asynq.WarnLevel,
		BaseContext:              func() context.Context { return context.WithoutCancel(ctx) },
	})
	if err := srv.Start(traced(w.mux)); err != nil {
		return fmt.Errorf("start asynq server: %w", err)
	}
	dsrv, err := w.deliveries.start(ctx)
	if err != nil {
		srv.Shutdown()
		return err
	}
	// Woken runs get the same grace as Asynq's tasks when the worker stops.
	wakeCtx, stopWoken := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWoken()
	stopWatch := func() {}
	if w.opts.Waker != nil {
		stopWatch = w.watchCreated(wakeCtx)
	}
	var wg sync.WaitGroup
	w.mu.Lock()
	for _, p := range w.periodic {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, p)
		}()
	}
	w.mu.Unlock()
	<-ctx.Done()
	stopWatch()
	wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); dsrv.Shutdown() }() // both servers drain at once
	go func() {
		defer wg.Done()
		grace := time.AfterFunc(w.opts.ShutdownTimeout, stopWoken)
		defer grace.Stop()
		w.woken.wg.Wait()
	}()
	srv.Shutdown()
	wg.Wait()
	return nil
}

// loop runs one periodic job: once at start, then every p.every.
func (w *Worker) loop(ctx context.Context, p periodic) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		if err := p.fn(ctx); err != nil && ctx.Err() == nil {
			w.metrics.jobFailures.WithLabelValues(telemetry.OneOf(p.name, "relay", "reconcile", "retention")).Inc()
			w.log.WarnContext(ctx, "periodic job failed", slog.String("job", p.name), slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// errWaiting says "come back shortly": an earlier operation of the same
// instance has not finished, or another worker holds the instance. It is
// not a failure (Config.IsFailure), so it never uses up the task's retries.
var errWaiting = errors.New("waiting for an earlier operation of the instance")

// retryDelay retries a waiting task within a few hundred milliseconds and a
// failed one with capped exponential backoff and full jitter.
func (w *Worker) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if errors.Is(err, errWaiting) {
		return 100*time.Millisecond + rand.N(150*time.Millisecond)
	}
	ceiling := w.opts.MaxBackoff
	if n < 20 {
		ceiling = min(500*time.Millisecond<<n, w.opts.MaxBackoff)
	}
	return ceiling/2 + rand.N(ceiling/2+1)
}

// asynqLogger sends Asynq's log lines to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }

// Fatal is only called by Asynq when the server cannot go on.
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...))
	os.Exit(1)
}
