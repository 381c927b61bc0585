package fly_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/telemetry"
)

// TestCallsCarryTheTraceWithoutRecording: in a process that records no
// spans, a Fly call skips otelhttp but still passes the caller's trace
// context on in its traceparent header, as otelhttp's no-op span did; a
// caller with no trace sends none. The request the client built is not
// changed. Not parallel: it sets the process's propagator.
func TestCallsCarryTheTraceWithoutRecording(t *testing.T) {
	if telemetry.Recording() {
		t.Fatal("a tracer provider is installed: this test is about a process without one")
	}
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{}) // as telemetry.SetupTracing installs it
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("traceparent"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"app_1","name":"moc-x","status":"deployed","organization":{"slug":"personal"}}`))
	}))
	t.Cleanup(srv.Close)
	c := fly.New(fly.Options{BaseURL: srv.URL, Token: testToken, MaxRetries: -1})

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traced := otel.GetTextMapPropagator().Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	if !trace.SpanContextFromContext(traced).IsValid() {
		t.Fatal("the test's trace context did not parse")
	}
	for _, ctx := range []context.Context{traced, context.Background()} {
		if _, err := c.GetApp(ctx, "moc-x"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != tp || got[1] != "" {
		t.Errorf("traceparent headers %q, want [%q \"\"]", got, tp)
	}
}
