package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/telemetry"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/webhook"
	"github.com/myopenclaw/mocd/worker"
)

// TestOneTraceFromRequestToWebhook records spans in memory (the SDK's
// tracetest recorder) and follows one create: the api's request span, its
// accept transaction, the worker's run, every Fly call it makes and the
// webhook delivery it causes, down to the delivery's outbound request, all
// share one trace id, whichever path carries the operation to the worker.
// Each subtest forces one path, so that none passes by luck of a race:
// the wake-up on commit (no task queued), the Asynq task (no wake-up), and
// the relay queueing a task Redis never got (neither). Not parallel: it
// sets the process's tracer provider.
func TestOneTraceFromRequestToWebhook(t *testing.T) {
	noEnqueue := func(o *api.Options) { o.Enqueuer = nil }
	paths := []struct {
		name string
		opts Options
		run  string // the span of the run that made the Fly calls
	}{
		{"woken by the commit's notification", Options{API: noEnqueue, RelayInterval: time.Hour}, "wake instance:operation"},
		{"its Asynq task", Options{Worker: func(o *worker.Options) { o.Waker = nil }}, "asynq instance:operation"},
		{"a task the relay queued again", Options{API: noEnqueue, Worker: func(o *worker.Options) { o.Waker = nil }}, "asynq instance:operation"},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			sr := recordSpans(t)
			sys := Start(t, p.opts)
			_, token := sys.NewAccount(t, "pro")
			rc := newReceiver(t, nil)
			createEndpoint(t, sys, token, rc.srv.URL, "operation.succeeded")
			op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "traced"})
			if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
				t.Fatalf("create: %+v", d)
			}
			rc.first(t, "operation.succeeded", func(e webhook.Event) bool { return e.Type == "operation.succeeded" })

			want := []string{"POST /api/v1/instances", "transaction /api/v1/instances", p.run,
				"fly POST /v1/apps", "fly POST /v1/apps/{app}/machines", "asynq webhook:deliver", "webhook POST"}
			names := traceOf(t, sr, "transaction /api/v1/instances", want)
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
			// The run's Fly calls are its children, not siblings in the trace.
			if !childOf(sr, "fly POST /v1/apps", p.run) {
				t.Errorf("the span %q is not the parent of the create's Fly calls", p.run)
			}
			if !childOf(sr, "webhook POST", "asynq webhook:deliver") {
				t.Error("the delivery's outbound request is not a child of its task's span")
			}
		})
	}

	// A delivery the api wrote and Redis never got (the test event): the
	// relay queues its task in the trace of the request that wrote it.
	t.Run("a delivery the relay queued again", func(t *testing.T) {
		sr := recordSpans(t)
		sys := Start(t, Options{API: noEnqueue, Worker: func(o *worker.Options) { o.Webhooks.Grace = 50 * time.Millisecond }})
		_, token := sys.NewAccount(t, "pro")
		rc := newReceiver(t, nil)
		ep := createEndpoint(t, sys, token, rc.srv.URL, "operation.succeeded")
		d := sendTest(t, sys, token, ep.ID)
		if got := waitDelivery(t, sys, token, ep.ID, d.ID); got.Status != "succeeded" {
			t.Fatalf("delivery %+v", got)
		}
		traceOf(t, sr, "transaction /api/v1/webhooks/:id/test", []string{"transaction /api/v1/webhooks/:id/test", "asynq webhook:deliver", "webhook POST"})
	})
}

// recordSpans installs, for the test, a tracer provider that records every
// span in memory, and the W3C propagator.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	if _, err := telemetry.SetupTracing(t.Context(), func(string) string { return "" }, "e2e"); err != nil {
		t.Fatal(err) // installs the propagator; exports nothing
	}
	return sr
}

// traceOf waits until the trace of the one ended span named root holds an
// ended span of each name in want, and answers how many spans of each name
// that trace holds; it fails the test, naming what is missing, if that
// does not happen within 30 seconds.
func traceOf(t *testing.T, sr *tracetest.SpanRecorder, root string, want []string) map[string]int {
	t.Helper()
	var (
		names   map[string]int
		missing []string
		err     error
	)
	if !testenv.Poll(testenv.PollTimeout, func() bool {
		names, missing, err = spansOf(sr, root, want)
		return err == nil && len(missing) == 0
	}) {
		if err != nil {
			t.Fatal(err)
		}
		t.Fatalf("spans %q are not in the trace of %q, which holds %v", missing, root, names)
	}
	t.Logf("spans of the trace: %v", names)
	return names
}

func spansOf(sr *tracetest.SpanRecorder, root string, want []string) (names map[string]int, missing []string, err error) {
	var id trace.TraceID
	for _, s := range sr.Ended() {
		if s.Name() == root {
			if id.IsValid() {
				return nil, nil, fmt.Errorf("more than one span %q", root)
			}
			id = s.SpanContext().TraceID()
		}
	}
	if !id.IsValid() {
		return nil, nil, fmt.Errorf("no span %q", root)
	}
	names = map[string]int{}
	for _, s := range sr.Ended() {
		if s.SpanContext().TraceID() == id {
			names[s.Name()]++
		}
	}
	for _, n := range want {
		if names[n] == 0 {
			missing = append(missing, n)
		}
	}
	return names, missing, nil
}

// childOf reports whether every ended span named child has a parent named
// parent (and there is at least one).
func childOf(sr *tracetest.SpanRecorder, child, parent string) bool {
	byID := map[trace.SpanID]string{}
	for _, s := range sr.Ended() {
		byID[s.SpanContext().SpanID()] = s.Name()
	}
	var parents []string
	for _, s := range sr.Ended() {
		if s.Name() == child {
			parents = append(parents, byID[s.Parent().SpanID()])
		}
	}
	return len(parents) > 0 && !slices.ContainsFunc(parents, func(p string) bool { return p != parent })
}
