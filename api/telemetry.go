package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// Label sets of the api's engine metrics: every value is one of these or
// telemetry.Other, whatever a request carries.
var (
	// acceptedTypes are the operation types a call can create.
	acceptedTypes = []string{store.OpCreate, store.OpStart, store.OpStop, store.OpRestart, store.OpDelete,
		"instance.upgrade", "instance.configure"}
	// limitPolicies are the rate-limit policies (RateLimit-Policy names).
	limitPolicies = []string{ratelimit.KeyMinute, ratelimit.KeyHour, ratelimit.AccountMinute, ratelimit.AddressMinute}
)

// Results of an Idempotency-Key that found an earlier request.
const (
	idemReplayed = "replayed" // the stored answer was sent again
	idemInUse    = "in_use"   // 409: the first request is still in flight
	idemReused   = "reused"   // 422: same key, another request
)

// engineMetrics count what the api does for the engine, beside the HTTP
// series of metrics.go: operations accepted, rate-limit refusals, and
// Idempotency-Key replays and conflicts.
type engineMetrics struct {
	accepted    *prometheus.CounterVec
	refused     *prometheus.CounterVec
	unavailable prometheus.Counter
	idempotency *prometheus.CounterVec
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		accepted: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_operations_accepted_total",
			Help: "Operations accepted (committed, 202) by type.",
		}, []string{"type"})),
		refused: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_ratelimit_refusals_total",
			Help: "Requests refused with 429 by the rate-limit policy that refused them (key-minute, key-hour, account-minute, address-minute: failed authentications).",
		}, []string{"policy"})),
		unavailable: telemetry.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mocd_ratelimit_unavailable_total",
			Help: "Requests refused with 503 because the rate limiter (Redis) did not answer: the limiter failing closed.",
		})),
		idempotency: telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mocd_idempotency_total",
			Help: "Requests whose Idempotency-Key was seen before, by result: replayed, in_use (409), reused (422).",
		}, []string{"result"})),
	}
	for _, t := range acceptedTypes {
		m.accepted.WithLabelValues(t)
	}
	for _, p := range limitPolicies {
		m.refused.WithLabelValues(p)
	}
	for _, r := range []string{idemReplayed, idemInUse, idemReused} {
		m.idempotency.WithLabelValues(r)
	}
	return m
}

func (m *engineMetrics) acceptedOp(opType string) {
	m.accepted.WithLabelValues(telemetry.OneOf(opType, acceptedTypes...)).Inc()
}

func (m *engineMetrics) refusedBy(policy string) {
	m.refused.WithLabelValues(telemetry.OneOf(policy, limitPolicies...)).Inc()
}
