package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// TestCallersTraceIsCarriedWithoutRecording: this process records no spans
// (no tracer provider: the api then makes no span per request), yet an
// accepted operation still names the caller's trace, so that a worker that
// does record continues it.
func TestCallersTraceIsCarriedWithoutRecording(t *testing.T) {
	t.Parallel()
	// As mocd api does at start: the W3C propagator, and no provider (no
	// OTEL_EXPORTER_OTLP_ENDPOINT).
	if _, err := telemetry.SetupTracing(t.Context(), func(string) string { return "" }, "mocd-api"); err != nil {
		t.Fatal(err)
	}
	if telemetry.Recording() {
		t.Fatal("a tracer provider is installed in this test process")
	}
	e := startAPI(t)
	acct, token := e.account("pro", apikey.PresetFull)
	ctx := context.Background()
	instID := id.New(id.Instance)
	if _, err := store.InsertInstance(ctx, e.st.DB, instID, acct, "traced-"+strings.ToLower(id.Random(8)), "iad", store.StatusRunning); err != nil {
		t.Fatal(err)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := e.do("POST", "/api/v1/instances/"+instID+"/restart", token, nil, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.Status != 202 {
		t.Fatalf("restart: %d %s", r.Status, r.Body)
	}
	var op struct{ ID string }
	r.JSON(t, &op)
	ops, err := store.UnfinishedOperations(ctx, e.st.DB, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if o.ID == op.ID {
			if o.Traceparent == nil || !strings.Contains(*o.Traceparent, traceID) {
				t.Fatalf("the operation's traceparent is %v, want the caller's trace %s", o.Traceparent, traceID)
			}
			return
		}
	}
	t.Fatalf("operation %s is not among the unfinished: %+v", op.ID, ops)
}
