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
	// opTypes are the operation types (API.md).
	opTypes = []string{store.OpCreate, store.OpStart, store.OpStop, store.OpRestart, store.OpDelete,
		"instance.upgrade", "instance.configure"}
	// opErrorCodes are the error codes an operation can fail with.
	opErrorCodes = []string{"fly_rejected", "fly_unavailable", "machine_gone", "no_machine",
		"unknown_operation", "upgrade_rolled_back", "cancelled"}
	// instanceStatuses are what the reconciler can observe.
	instanceStatuses = []string{store.StatusRunning, store.StatusStopped, store.StatusFailed}
)

// Outcomes of one webhook attempt, the outcome label.
const (
	attemptDelivered = "delivered" // 2xx
	attemptRetry     = "retry"     // no answer or a non-2xx: another attempt is scheduled
	attemptExhausted = "exhausted" // the last attempt of the schedule failed: the delivery failed
	attemptGone      = "gone"      // 410: the delivery failed and the endpoint is disabled
)

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
}

// opBuckets span a fast flysim step to a slow Fly create (minutes).
var opBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		opsStarted: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_operations_started_total",
			Help: "Operations a worker began to carry out (marked running), by type.",
		}, []string{"type"})),
		opsFinished: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_operations_finished_total",
			Help: "Operations finished by type, outcome (succeeded, failed) and error code (none when succeeded).",
		}, []string{"type", "outcome", "code"})),
		opQueueTime: telemetry.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mocd_operation_queue_seconds",
			Help:    "Time from an operation's accept to its start (waiting in the queue and behind earlier operations of its instance), by type.",
			Buckets: opBuckets,
		}, []string{"type"})),
		opRunTime: telemetry.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mocd_operation_run_seconds",
			Help:    "Time from an operation's start to its finish, by type and outcome.",
			Buckets: opBuckets,
		}, []string{"type", "outcome"})),
		attempts: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_webhook_attempts_total",
			Help: "Webhook delivery attempts by outcome (delivered, retry, exhausted, gone) and attempt number (1 is the first).",
		}, []string{"outcome", "attempt"})),
		attemptTime: telemetry.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mocd_webhook_attempt_duration_seconds",
			Help:    "Time a receiver took to answer one webhook attempt (or to fail), by outcome.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}, []string{"outcome"})),
		disabled: telemetry.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mocd_webhook_endpoints_disabled_total",
			Help: "Webhook endpoints the worker disabled because their receiver answered 410 Gone.",
		})),
		abandoned: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_webhook_deliveries_abandoned_total",
			Help: "Pending webhook deliveries failed without an attempt, by reason (endpoint_disabled, attempts_exhausted).",
		}, []string{"reason"})),
		requeued: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_relay_requeued_total",
			Help: "Tasks the relay queued again, by kind (operation, delivery) and reason: missing (Redis lost it), archived (Asynq gave up on it), rescue (its worker died while it ran).",
		}, []string{"kind", "reason"})),
		driftFound: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_reconciler_drift_found_total",
			Help: "Settled instances whose machine was found in another state than their status, by the status observed.",
		}, []string{"observed"})),
		driftRepaired: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_reconciler_drift_repaired_total",
			Help: "Drift the reconciler repaired (the instance now shows what its machine does), by the status observed.",
		}, []string{"observed"})),
		orphans: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_reconciler_orphans_swept_total",
			Help: "Fly resources no live instance owns that the reconciler removed, by kind (app, machine).",
		}, []string{"kind"})),
		jobFailures: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_worker_job_failures_total",
			Help: "Passes of a periodic job (relay, reconcile, retention) that ended in an error.",
		}, []string{"job"})),
	}
}

// init creates every series of the fixed label sets at zero, so that
// dashboards and alerts see a family (and a rate of 0) before its first
// event, and a restart reads as a reset, not as a series appearing.
func (m *metrics) init(jobs []string) *metrics {
	for _, t := range opTypes {
		m.opsStarted.WithLabelValues(t)
		m.opQueueTime.WithLabelValues(t)
		m.opsFinished.WithLabelValues(t, store.OpSucceeded, "none")
		m.opRunTime.WithLabelValues(t, store.OpSucceeded)
		m.opRunTime.WithLabelValues(t, store.OpFailed)
		for _, c := range opErrorCodes {
			m.opsFinished.WithLabelValues(t, store.OpFailed, c)
		}
	}
	for _, o := range []string{attemptDelivered, attemptRetry, attemptExhausted, attemptGone} {
		m.attemptTime.WithLabelValues(o)
		for n := 1; n <= maxAttemptLabel; n++ {
			m.attempts.WithLabelValues(o, strconv.Itoa(n))
		}
	}
	for _, r := range []string{abandonDisabled, abandonExhausted} {
		m.abandoned.WithLabelValues(r)
	}
	for _, k := range []string{requeueOperation, requeueDelivery} {
		for _, r := range []string{requeueMissing, requeueArchived, requeueRescue} {
			m.requeued.WithLabelValues(k, r)
		}
	}
	for _, o := range instanceStatuses {
		m.driftFound.WithLabelValues(o)
		m.driftRepaired.WithLabelValues(o)
	}
	m.orphans.WithLabelValues("app")
	m.orphans.WithLabelValues("machine")
	for _, j := range jobs {
		m.jobFailures.WithLabelValues(j)
	}
	return m
}

func opTypeLabel(t string) string { return telemetry.OneOf(t, opTypes...) }

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

// orphanSwept records one orphaned Fly resource removed; kind is "app" or
// "machine".
func (m *metrics) orphanSwept(kind string) {
	m.orphans.WithLabelValues(telemetry.OneOf(kind, "app", "machine")).Inc()
}
