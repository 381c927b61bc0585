package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/myopenclaw/mocd/telemetry"
)

// metrics are the api's Prometheus series, on an injected registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	return &metrics{
		reg:      reg,
		requests: telemetry.NewCounterVec(reg, "mocd_http_requests_total", "HTTP requests by route and status.", "method", "route", "status"),
		duration: telemetry.NewHistogramVec(reg, "mocd_http_request_duration_seconds", "HTTP request latency by route.",
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "method", "route"),
	}
}

func (m *metrics) middleware(c *gin.Context) {
	start := time.Now()
	c.Next()
	method, route := methodLabel(c.Request.Method), routeLabel(c)
	m.requests.WithLabelValues(method, route, strconv.Itoa(c.Writer.Status())).Inc()
	m.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
}

// knownMethods are the methods a label or a log line may name as sent.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
	http.MethodConnect: true, http.MethodTrace: true,
}

// methodLabel is the request's method when it is a known one, else OTHER.
// Every label value must come from a fixed set: the raw method is the
// caller's to choose, and 40 requests with a 200 KB method once grew
// /metrics to 128 MB for good (issue 12).
func methodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return "OTHER"
}

// routeLabel is the matched route template (/api/v1/instances/:id), never
// the path as sent, or "unmatched".
func routeLabel(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}

func (m *metrics) handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	return gin.WrapH(h)
}
