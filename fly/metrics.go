package fly

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/myopenclaw/mocd/telemetry"
)

// Results of one request to the Machines API, the result label: the
// transient share of calls is rate(result="transient") over all of them.
const (
	resultOK        = "ok"        // 1xx–3xx
	resultTransient = "transient" // 429, 502, 503, 504 or a network failure: retried
	resultRejected  = "rejected"  // any other 4xx: the call itself was refused
	resultError     = "error"     // 500 and other 5xx, or an unusable answer
)

// metrics are the client's Prometheus series. Every label comes from a
// fixed set: the route is a template (/v1/apps/{app}/machines/{id}/start),
// never an app name or machine id.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// usedRoutes are the calls mocd makes; their retry series exist at 0 from
// start, so that a dashboard shows a rate of 0 rather than no data.
var usedRoutes = [][2]string{
	{http.MethodPost, "/v1/apps"}, {http.MethodGet, "/v1/apps/{app}"}, {http.MethodDelete, "/v1/apps/{app}"},
	{http.MethodPost, "/v1/apps/{app}/machines"}, {http.MethodGet, "/v1/apps/{app}/machines"},
	{http.MethodGet, "/v1/apps/{app}/machines/{id}"}, {http.MethodDelete, "/v1/apps/{app}/machines/{id}"},
	{http.MethodPost, "/v1/apps/{app}/machines/{id}/start"}, {http.MethodPost, "/v1/apps/{app}/machines/{id}/stop"},
	{http.MethodPost, "/v1/apps/{app}/machines/{id}/restart"}, {http.MethodGet, "/v1/apps/{app}/machines/{id}/wait"},
	{http.MethodGet, "/v1/apps"}, {http.MethodPost, "/v1/apps/{app}/machines/{id}"},
	{http.MethodPost, "/v1/apps/{app}/machines/{id}/lease"}, {http.MethodDelete, "/v1/apps/{app}/machines/{id}/lease"},
	{http.MethodPost, "/v1/apps/{app}/volumes"}, {http.MethodGet, "/v1/apps/{app}/volumes"},
	{http.MethodGet, "/v1/apps/{app}/volumes/{id}"}, {http.MethodDelete, "/v1/apps/{app}/volumes/{id}"},
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := newMetricsVecs(reg)
	for _, r := range usedRoutes {
		m.retries.WithLabelValues(r[0], r[1])
	}
	return m
}

func newMetricsVecs(reg prometheus.Registerer) *metrics {
	return &metrics{
		requests: telemetry.NewCounterVec(reg, "mocd_fly_requests_total",
			"Requests to the Fly Machines API (each try of a retried call counts) by method, route template, status class (network: no answer) and result (ok, transient, rejected, error).",
			"method", "route", "code_class", "result"),
		duration: telemetry.NewHistogramVec(reg, "mocd_fly_request_duration_seconds",
			"Latency of one request to the Fly Machines API by method and route template (wait calls hold up to a minute).",
			[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}, "method", "route"),
		retries: telemetry.NewCounterVec(reg, "mocd_fly_retries_total",
			"Fly Machines API calls sent again after a transient failure, by method and route template.", "method", "route"),
	}
}

// instrumentedTransport counts and times each request, and makes it a
// client span (otelhttp) named after its route template.
//
// In a process that records no spans (telemetry.Recording), otelhttp's
// span would be a no-op, yet its attributes and metric options cost 7% of
// a worker's CPU per operation (issue 18): the request then goes to plain
// instead, carrying only the caller's trace context in its headers, as
// otelhttp's would have.
type instrumentedTransport struct {
	next, plain http.RoundTripper
	m           *metrics
}

func instrument(next http.RoundTripper, m *metrics) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	traced := otelhttp.NewTransport(next, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return "fly " + methodLabel(r.Method) + " " + Route(r.URL.Path)
	}))
	return &instrumentedTransport{next: traced, plain: next, m: m}
}

func (t *instrumentedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	method, route := methodLabel(r.Method), Route(r.URL.Path)
	next := t.next
	if !telemetry.Recording() {
		r = telemetry.PropagateTo(r)
		next = t.plain
	}
	start := time.Now()
	resp, err := next.RoundTrip(r)
	t.m.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	class, result := "network", resultTransient
	switch {
	case err != nil:
		if !(&netError{err: err}).temporary() {
			result = resultError
		}
	default:
		class = telemetry.StatusClass(resp.StatusCode)
		result = resultOf(resp.StatusCode)
	}
	t.m.requests.WithLabelValues(method, route, class, result).Inc()
	return resp, err
}

func resultOf(code int) string {
	switch {
	case code < 400:
		return resultOK
	case code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout:
		return resultTransient
	case code < 500:
		return resultRejected
	}
	return resultError
}

func methodLabel(m string) string {
	return telemetry.OneOf(m, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead)
}

// machineActions are the calls below /machines/{id} that get a route of
// their own; anything else there is "other".
var machineActions = []string{"start", "stop", "restart", "wait", "lease", "suspend", "cordon", "uncordon", "metadata", "events", "exec"}

// Route answers the template of a Machines API path, such as
// /v1/apps/{app}/machines/{id}/start, or "other": names and ids are never
// part of it, so it is safe as a metric label or a span name.
func Route(path string) string {
	i := strings.Index(path, "/v1/")
	if i < 0 {
		return telemetry.Other
	}
	seg := strings.Split(strings.Trim(path[i+len("/v1/"):], "/"), "/")
	if seg[0] != "apps" {
		return telemetry.Other
	}
	switch {
	case len(seg) == 1:
		return "/v1/apps"
	case len(seg) == 2:
		return "/v1/apps/{app}"
	case seg[2] == "volumes" && len(seg) == 3:
		return "/v1/apps/{app}/volumes"
	case seg[2] == "volumes" && len(seg) == 4:
		return "/v1/apps/{app}/volumes/{id}"
	case seg[2] != "machines":
		return telemetry.Other
	case len(seg) == 3:
		return "/v1/apps/{app}/machines"
	case len(seg) == 4:
		return "/v1/apps/{app}/machines/{id}"
	case len(seg) == 5 && telemetry.OneOf(seg[4], machineActions...) != telemetry.Other:
		return "/v1/apps/{app}/machines/{id}/" + seg[4]
	}
	return telemetry.Other
}

// retried counts one call sent again.
func (m *metrics) retried(method, path string) {
	m.retries.WithLabelValues(methodLabel(method), Route("/v1"+path)).Inc()
}
