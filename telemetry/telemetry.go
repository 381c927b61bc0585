// Package telemetry is how mocd's processes let an operator watch them:
// Prometheus registration shared by every package's metrics, label values
// held to fixed sets, OpenTelemetry tracing configured from the standard
// OTEL_* environment variables, trace context carried across Asynq tasks,
// and a slog handler that stamps each log line with its trace and span ids.
//
// Each package declares its own metrics (api, worker, fly) on a registry
// its caller injects; this package only holds what they share.
package telemetry

import (
	"errors"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Other is the label value of anything outside a label's fixed set.
const Other = "other"

// Register registers c on reg and answers it, or answers the collector
// already registered with the same descriptors: a worker stopped and
// started again in one process (tests, mocd dev) keeps counting into the
// same series instead of panicking. A nil reg leaves c unregistered.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

// NewCounterVec registers a counter family on reg (Register): one call
// for what every package's metrics declare alike.
func NewCounterVec(reg prometheus.Registerer, name, help string, labels ...string) *prometheus.CounterVec {
	return Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

// NewCounter registers a counter without labels on reg.
func NewCounter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	return Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

// NewHistogramVec registers a histogram family with buckets on reg.
func NewHistogramVec(reg prometheus.Registerer, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
}

// Zero creates at 0 the series of every combination of sets, one set of
// values per label in the family's order, so that dashboards and alerts
// see the family (and a rate of 0) before its first event, and a restart
// reads as a reset rather than as series appearing.
func Zero(vec *prometheus.MetricVec, sets ...[]string) {
	values := make([]string, len(sets))
	var each func(i int)
	each = func(i int) {
		if i == len(sets) {
			if _, err := vec.GetMetricWithLabelValues(values...); err != nil {
				panic(err) // a set per label is the caller's to get right
			}
			return
		}
		for _, v := range sets[i] {
			values[i] = v
			each(i + 1)
		}
	}
	each(0)
}

// OneOf answers v when it is one of allowed and Other otherwise, so that a
// label never takes a value from input: an id, a path or a header would
// make a new series per value and could fill the server's memory.
func OneOf(v string, allowed ...string) string {
	if slices.Contains(allowed, v) {
		return v
	}
	return Other
}

// StatusClass is the label of an HTTP status: "2xx" … "5xx", or Other.
func StatusClass(code int) string {
	if code < 100 || code > 599 {
		return Other
	}
	return string(rune('0'+code/100)) + "xx"
}
