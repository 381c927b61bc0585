package worker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// Label sets. Every label value of the worker's metrics comes from one of
// these (or is telemetry.Other), whatever is in the database.
var (
	// The operation types are store.OpTypes (API.md).
	// opErrorCodes are the error codes an operation can fail with.
	opErrorCodes = []string{"fly_rejected", "fly_unavailable", "machine_gone", "no_machine",
		"unknown_operation", "upgrade_rolled_back", "cancelled"}
	// instanceStatuses are what the reconciler can observe.
	instanceStatuses = []string{store.StatusRunning, store.StatusStopped, store.StatusFailed}
	// orphanKinds are what the reconciler sweeps.
	orphanKinds = []string{"app", "machine", "volume"}
)

// Outcomes of one webhook attempt, the outcome label.
const (
	attemptDelivered = "delivered" // 2xx
	attemptRetry     = "retry"     // no answer or a non-2xx: another attempt is scheduled
	attemptExhausted = "exhausted" // the last attempt of the schedule failed: the delivery failed
	attemptGone      = "gone"      // 410: the delivery failed and the endpoint is disabled
)

// attemptOutcomes and attemptNumbers are the label sets of an attempt.
var (
	attemptOutcomes = []string{attemptDelivered, attemptRetry, attemptExhausted, attemptGone}
	attemptNumbers  = func() []string {
		n := make([]string, maxAttemptLabel)
		for i := range n {
			n[i] = strconv.Itoa(i + 1)
		}
		return n
	}()
)

// Outcomes of a wake-up (wake.go), the outcome label.
const (
	wakeRan     = "ran"     // it took the instance and ran the operation (or found it just finished)
	wakeTaken   = "taken"   // another run (a task, another worker's wake-up) had the operation
	wakeLeft    = "left"    // left to its task: the instance stayed busy, or a step failed
	wakeDropped = "dropped" // every wake-up slot was busy
	wakeBusy    = "busy"    // not an outcome: the try found the instance busy
)

// wakeOutcomes are the outcome label's values.
var wakeOutcomes = []string{wakeRan, wakeTaken, wakeLeft, wakeDropped}

// Kinds and reasons of relay re-enqueues, and reasons a delivery is
// abandoned without an attempt.
const (
	requeueOperation = "operation"
	requeueDelivery  = "delivery"
	requeueMissing   = "missing"
	requeueArchived  = "archived"
	requeueRescue    = "rescue"
	abandonDisabled  = "endpoint_disabled"
	abandonExhausted = "attempts_exhausted"
)

// metrics are the worker's Prometheus series.
type metrics struct {
	opsStarted    *prometheus.CounterVec
	opsFinished   *prometheus.CounterVec
	opQueueTime   *prometheus.HistogramVec
	opRunTime     *prometheus.HistogramVec
	attempts      *prometheus.CounterVec
	attemptTime   *prometheus.HistogramVec
	disabled      prometheus.Counter
	abandoned     *prometheus.CounterVec
	requeued      *prometheus.CounterVec
	driftFound    *prometheus.CounterVec
	driftRepaired *prometheus.CounterVec
	orphans       *prometheus.CounterVec
	jobFailures   *prometheus.CounterVec
	wakeups       *prometheus.CounterVec
	wakeRetries   prometheus.Counter
	handoffs      prometheus.Counter
}

// opBuckets span a fast flysim step to a slow Fly create (minutes).
var opBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		opsStarted: telemetry.NewCounterVec(reg, "mocd_operations_started_total",
			"Operations a worker began to carry out (marked running), by type.", "type"),
		opsFinished: telemetry.NewCounterVec(reg, "mocd_operations_finished_total",
			"Operations finished by type, outcome (succeeded, failed) and error code (none when succeeded).", "type", "outcome", "code"),
		opQueueTime: telemetry.NewHistogramVec(reg, "mocd_operation_queue_seconds",
			"Time from an operation's accept to its start (waiting in the queue and behind earlier operations of its instance), by type.", opBuckets, "type"),
		opRunTime: telemetry.NewHistogramVec(reg, "mocd_operation_run_seconds",
			"Time from an operation's start to its finish, by type and outcome.", opBuckets, "type", "outcome"),
		attempts: telemetry.NewCounterVec(reg, "mocd_webhook_attempts_total",
			"Webhook delivery attempts by outcome (delivered, retry, exhausted, gone) and attempt number (1 is the first).", "outcome", "attempt"),
		attemptTime: telemetry.NewHistogramVec(reg, "mocd_webhook_attempt_duration_seconds",
			"Time a receiver took to answer one webhook attempt (or to fail), by outcome.",
			[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15}, "outcome"),
		disabled: telemetry.NewCounter(reg, "mocd_webhook_endpoints_disabled_total",
			"Webhook endpoints the worker disabled because their receiver answered 410 Gone."),
		abandoned: telemetry.NewCounterVec(reg, "mocd_webhook_deliveries_abandoned_total",
			"Pending webhook deliveries failed without an attempt, by reason (endpoint_disabled, attempts_exhausted).", "reason"),
		requeued: telemetry.NewCounterVec(reg, "mocd_relay_requeued_total",
			"Tasks the relay queued again, by kind (operation, delivery) and reason: missing (Redis lost it), archived (Asynq gave up on it), rescue (its worker died while it ran).", "kind", "reason"),
		driftFound: telemetry.NewCounterVec(reg, "mocd_reconciler_drift_found_total",
			"Settled instances whose machine was found in another state than their status, by the status observed.", "observed"),
		driftRepaired: telemetry.NewCounterVec(reg, "mocd_reconciler_drift_repaired_total",
			"Drift the reconciler repaired (the instance now shows what its machine does), by the status observed.", "observed"),
		orphans: telemetry.NewCounterVec(reg, "mocd_reconciler_orphans_swept_total",
			"Fly resources no live instance owns that the reconciler removed, by kind (app, machine, volume).", "kind"),
		jobFailures: telemetry.NewCounterVec(reg, "mocd_worker_job_failures_total",
			"Passes of a periodic job (relay, reconcile, retention) that ended in an error.", "job"),
		wakeups: telemetry.NewCounterVec(reg, "mocd_worker_wakeups_total",
			"Wake-ups on an accepted operation's commit, by outcome: ran (the wake-up ran it), taken (another run had it), left (to its task: the instance stayed busy, or a step failed), dropped (every wake-up slot was busy).", "outcome"),
		wakeRetries: telemetry.NewCounter(reg, "mocd_worker_wakeup_retries_total",
			"Pauses of wake-ups that found their instance's lock taken or an earlier operation of it unfinished, each followed by another try."),
		handoffs: telemetry.NewCounter(reg, "mocd_worker_handoffs_total",
			"Operations run by the run that finished the operation accepted before them on the same instance, without letting go of the instance."),
	}
}

// init creates every series of the fixed label sets at zero (telemetry.Zero).
func (m *metrics) init(jobs []string) *metrics {
	outcomes := []string{store.OpSucceeded, store.OpFailed}
	telemetry.Zero(m.opsStarted.MetricVec, store.OpTypes)
	telemetry.Zero(m.opQueueTime.MetricVec, store.OpTypes)
	telemetry.Zero(m.opsFinished.MetricVec, store.OpTypes, []string{store.OpSucceeded}, []string{"none"})
	telemetry.Zero(m.opsFinished.MetricVec, store.OpTypes, []string{store.OpFailed}, opErrorCodes)
	telemetry.Zero(m.opRunTime.MetricVec, store.OpTypes, outcomes)
	telemetry.Zero(m.attempts.MetricVec, attemptOutcomes, attemptNumbers)
	telemetry.Zero(m.attemptTime.MetricVec, attemptOutcomes)
	telemetry.Zero(m.abandoned.MetricVec, []string{abandonDisabled, abandonExhausted})
	telemetry.Zero(m.requeued.MetricVec, []string{requeueOperation, requeueDelivery}, []string{requeueMissing, requeueArchived, requeueRescue})
	telemetry.Zero(m.driftFound.MetricVec, instanceStatuses)
	telemetry.Zero(m.driftRepaired.MetricVec, instanceStatuses)
	telemetry.Zero(m.orphans.MetricVec, orphanKinds)
	telemetry.Zero(m.jobFailures.MetricVec, jobs)
	telemetry.Zero(m.wakeups.MetricVec, wakeOutcomes)
	return m
}

func opTypeLabel(t string) string { return telemetry.OneOf(t, store.OpTypes...) }

// started records an operation marked running for the first time (a
// retried or rescued operation is marked running again).
func (m *metrics) started(op store.Operation) {
	if op.Attempts != 1 {
		return
	}
	typ := opTypeLabel(op.Type)
	m.opsStarted.WithLabelValues(typ).Inc()
	if op.StartedAt != nil {
		m.opQueueTime.WithLabelValues(typ).Observe(max(op.StartedAt.Sub(op.CreatedAt), 0).Seconds())
	}
}

// finished records an operation's outcome.
func (m *metrics) finished(op store.Operation) {
	typ := opTypeLabel(op.Type)
	code := "none"
	if op.ErrorCode != nil {
		code = telemetry.OneOf(*op.ErrorCode, opErrorCodes...)
	}
	outcome := telemetry.OneOf(op.Status, store.OpSucceeded, store.OpFailed)
	m.opsFinished.WithLabelValues(typ, outcome, code).Inc()
	if op.StartedAt != nil && op.FinishedAt != nil {
		m.opRunTime.WithLabelValues(typ, outcome).Observe(max(op.FinishedAt.Sub(*op.StartedAt), 0).Seconds())
	}
}

// attempted records one webhook attempt.
func (m *metrics) attempted(outcome string, attempt int, took time.Duration) {
	n := telemetry.Other
	if attempt >= 1 && attempt <= maxAttemptLabel {
		n = strconv.Itoa(attempt)
	}
	m.attempts.WithLabelValues(outcome, n).Inc()
	m.attemptTime.WithLabelValues(outcome).Observe(took.Seconds())
}

// maxAttemptLabel bounds the attempt label: the Standard Webhooks schedule
// makes 10 attempts at most.
const maxAttemptLabel = 10

// requeue records a task the relay queued again.
func (m *metrics) requeue(kind, reason string) { m.requeued.WithLabelValues(kind, reason).Inc() }

// drift records drift found; repaired says the repair committed.
func (m *metrics) drift(observed string, repaired bool) {
	o := telemetry.OneOf(observed, instanceStatuses...)
	if repaired {
		m.driftRepaired.WithLabelValues(o).Inc()
		return
	}
	m.driftFound.WithLabelValues(o).Inc()
}

// orphanSwept records one orphaned Fly resource removed; kind is "app",
// "machine" or "volume".
func (m *metrics) orphanSwept(kind string) {
	m.orphans.WithLabelValues(telemetry.OneOf(kind, orphanKinds...)).Inc()
}

// wakeup counts one wake-up's outcome.
func (m *metrics) wakeup(outcome string) {
	m.wakeups.WithLabelValues(telemetry.OneOf(outcome, wakeOutcomes...)).Inc()
}
