package telemetry_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/myopenclaw/mocd/telemetry"
)

// A traceparent kept with a row brings a later span into the trace of the
// span that wrote it; nothing, or junk, brings nothing.
func TestTraceparentRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("test").Start(context.Background(), "accept")
	defer span.End()

	kept := telemetry.Traceparent(ctx)
	if kept == nil || len(*kept) != 55 {
		t.Fatalf("Traceparent = %v, want a version-00 traceparent", kept)
	}
	later, child := tp.Tracer("test").Start(telemetry.WithTraceparent(context.Background(), kept), "run")
	defer child.End()
	got := trace.SpanContextFromContext(later)
	if got.TraceID() != span.SpanContext().TraceID() {
		t.Errorf("the later span is in trace %s, want %s", got.TraceID(), span.SpanContext().TraceID())
	}

	if p := telemetry.Traceparent(context.Background()); p != nil {
		t.Errorf("Traceparent without a span = %q, want nil", *p)
	}
	junk := "00-not-a-trace-01"
	for _, tp := range []*string{nil, &junk} {
		if sc := trace.SpanContextFromContext(telemetry.WithTraceparent(context.Background(), tp)); sc.IsValid() {
			t.Errorf("WithTraceparent(%v) carries %v", tp, sc)
		}
	}
}
