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
