package telemetry

import (
	"context"
	"net/http"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracer is the tracer of mocd's own spans (the accept transaction, an
// Asynq task); contrib instrumentation (otelgin, otelhttp) makes the rest.
func Tracer() trace.Tracer { return otel.Tracer("github.com/myopenclaw/mocd") }

// SetupTracing installs the W3C trace-context propagator and, when the
// standard OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set and
// OTEL_SDK_DISABLED is not true, a tracer provider exporting by OTLP/HTTP;
// the exporter reads the other OTEL_EXPORTER_OTLP_* variables itself and
// OTEL_SERVICE_NAME overrides service. Without an endpoint, spans are not
// recorded at all. shutdown flushes what is buffered.
func SetupTracing(ctx context.Context, getenv func(string) string, service string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func(context.Context) error { return nil }
	if getenv == nil {
		getenv = os.Getenv
	}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") ||
		(getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "") {
		return noop, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return noop, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		res = resource.Default()
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		res, _ = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName(name)))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Recording reports whether this process records spans: a tracer
// provider of the SDK is installed (SetupTracing found an endpoint, or a
// test installed one). Otherwise every span is a no-op, and code that only
// makes spans may step aside (see PropagateOnly).
func Recording() bool {
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	return ok
}

// PropagateOnly answers ctx carrying the caller's trace context from the
// request headers h, as a remote parent, without starting a span: what a
// process that records no spans still owes its callers, so that the
// traceparent it stores (an operation's, a delivery's) carries their
// trace on to a process that does record.
func PropagateOnly(ctx context.Context, h http.Header) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
}

// PropagateTo answers r carrying its context's trace context in its
// headers (traceparent, …), as a client span's would: what an outbound
// request of a process that records no spans still passes on. r itself is
// left as it is (a RoundTripper must not change its request); r is
// answered as it is when its context holds no span.
func PropagateTo(r *http.Request) *http.Request {
	if !trace.SpanContextFromContext(r.Context()).IsValid() {
		return r
	}
	r = r.Clone(r.Context())
	otel.GetTextMapPropagator().Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	return r
}

// Inject answers the trace context of ctx as headers (traceparent, …) to
// carry in an Asynq task; nil when ctx holds no span.
func Inject(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, c)
	return c
}

// Extract answers ctx carrying the trace context of headers, as a remote
// parent for the next span.
func Extract(ctx context.Context, headers map[string]string) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(headers))
}

// Traceparent answers the W3C traceparent of the span in ctx, to be stored
// with a row whose work goes on later, elsewhere (an operation, a webhook
// delivery): a worker woken by NOTIFY, or a task the relay queues again
// after Redis lost the first, then continues that trace. nil when ctx
// holds no span. Only the traceparent is kept: baggage and tracestate are
// the caller's and may be large.
func Traceparent(ctx context.Context) *string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	tp := c.Get("traceparent")
	if tp == "" {
		return nil
	}
	return &tp
}

// WithTraceparent answers ctx carrying tp (one Traceparent stored) as the
// remote parent of the next span; ctx itself when tp is nil or not a
// valid traceparent.
func WithTraceparent(ctx context.Context, tp *string) context.Context {
	if tp == nil || *tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": *tp})
}
