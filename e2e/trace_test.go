package e2e

import (
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/myopenclaw/mocd/telemetry"
	"github.com/myopenclaw/mocd/webhook"
)

// TestOneTraceFromRequestToWebhook records spans in memory (the SDK's
// tracetest recorder) and follows one create: the api's request span, its
// accept transaction, the worker's task, every Fly call it makes and the
// webhook delivery it causes all share one trace id. Not parallel: it sets
// the process's tracer provider.
func TestOneTraceFromRequestToWebhook(t *testing.T) {
	t.Skip("known gap: an operation started by the worker's wake-up on commit (h18) runs outside the task's trace; carry the trace context in the NOTIFY path, then remove this skip")
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	if _, err := telemetry.SetupTracing(t.Context(), func(string) string { return "" }, "e2e"); err != nil {
		t.Fatal(err) // installs the propagator; exports nothing
	}

	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	rc := newReceiver(t, nil)
	createEndpoint(t, sys, token, rc.srv.URL, "operation.succeeded")
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "traced"})
	sys.WaitOperation(t, token, op.ID)
	rc.first(t, "operation.succeeded", func(e webhook.Event) bool { return e.Type == "operation.succeeded" })
	waitFor(t, "the delivery's span to end", func() bool {
		for _, s := range sr.Ended() {
			if s.Name() == "asynq webhook:deliver" {
				return true
			}
		}
		return false
	})

	var accept sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == "transaction /api/v1/instances" {
			accept = s
		}
	}
	if accept == nil {
		t.Fatal("no span of the accept transaction")
	}
	trace := accept.SpanContext().TraceID()
	names := map[string]int{}
	for _, s := range sr.Ended() {
		if s.SpanContext().TraceID() == trace {
			names[s.Name()]++
		}
	}
	t.Logf("spans of the trace: %v", names)
	want := []string{"POST /api/v1/instances", "transaction /api/v1/instances", "asynq instance:operation",
		"fly POST /v1/apps", "fly POST /v1/apps/{app}/machines", "asynq webhook:deliver"}
	for _, n := range want {
		if names[n] == 0 {
			t.Errorf("span %q is not in the request's trace", n)
		}
	}
	fly := 0
	for n, c := range names {
		if strings.HasPrefix(n, "fly ") {
			fly += c
		}
	}
	// Every call the worker made to flysim for this create is in the trace.
	calls := sys.Flysim.Calls(http.MethodPost, "/v1/apps") + sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines")
	if fly < calls || calls < 2 {
		t.Errorf("%d Fly spans in the trace for %d create calls to flysim", fly, calls)
	}
}
