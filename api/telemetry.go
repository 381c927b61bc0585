package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// Label sets of the api's engine metrics: every value is one of these (or
// of store.OpTypes) or telemetry.Other, whatever a request carries.
var (
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
		accepted: telemetry.NewCounterVec(reg, "mocd_operations_accepted_total",
			"Operations accepted (committed, 202) by type.", "type"),
		refused: telemetry.NewCounterVec(reg, "mocd_ratelimit_refusals_total",
			"Requests refused with 429 by the rate-limit policy that refused them (key-minute, key-hour, account-minute, address-minute: failed authentications).", "policy"),
		unavailable: telemetry.NewCounter(reg, "mocd_ratelimit_unavailable_total",
			"Requests refused with 503 because the rate limiter (Redis) did not answer: the limiter failing closed."),
		idempotency: telemetry.NewCounterVec(reg, "mocd_idempotency_total",
			"Requests whose Idempotency-Key was seen before, by result: replayed, in_use (409), reused (422).", "result"),
	}
	telemetry.Zero(m.accepted.MetricVec, store.OpTypes)
	telemetry.Zero(m.refused.MetricVec, limitPolicies)
	telemetry.Zero(m.idempotency.MetricVec, []string{idemReplayed, idemInUse, idemReused})
	return m
}

func (m *engineMetrics) acceptedOp(opType string) {
	m.accepted.WithLabelValues(telemetry.OneOf(opType, store.OpTypes...)).Inc()
}

func (m *engineMetrics) refusedBy(policy string) {
	m.refused.WithLabelValues(telemetry.OneOf(policy, limitPolicies...)).Inc()
}
