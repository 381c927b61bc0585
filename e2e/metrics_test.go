package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/worker"
)

// delta is how much a series moved between two scrapes.
func delta(before, after Metrics, name string, labels ...string) float64 {
	return after.Value(name, labels...) - before.Value(name, labels...)
}

// wantDelta fails the test unless the series moved by exactly want.
func wantDelta(t *testing.T, before, after Metrics, want float64, name string, labels ...string) {
	t.Helper()
	if got := delta(before, after, name, labels...); got != want {
		t.Errorf("%s%v moved by %v, want %v", name, labels, got, want)
	}
}

// wantMoved fails the test unless the series grew.
func wantMoved(t *testing.T, before, after Metrics, name string, labels ...string) {
	t.Helper()
	if got := delta(before, after, name, labels...); got <= 0 {
		t.Errorf("%s%v moved by %v, want it to grow", name, labels, got)
	}
}

// TestMetricsFollowTheWork drives real work through api, worker and flysim
// and reads /metrics after each step: each family moves as the step says.
// The steps share one system, so a failed step ends the saga: a fault it
// injected and left unconsumed would fail the next steps for its reason.
func TestMetricsFollowTheWork(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: shortSchedule(10*time.Millisecond, 10*time.Millisecond)})
	_, token := sys.NewAccount(t, "business")
	const create = "instance.create"

	step(t, "an operation succeeding", func(t *testing.T) {
		before := sys.Metrics(t)
		op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "metrics-ok"})
		if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
			t.Fatalf("create: %+v", d)
		}
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_operations_accepted_total", "type", create)
		wantDelta(t, before, after, 1, "mocd_operations_started_total", "type", create)
		wantDelta(t, before, after, 1, "mocd_operations_finished_total", "type", create, "outcome", "succeeded", "code", "none")
		wantDelta(t, before, after, 0, "mocd_operations_finished_total", "outcome", "failed")
		wantDelta(t, before, after, 1, "mocd_operation_queue_seconds", "type", create)
		wantDelta(t, before, after, 1, "mocd_operation_run_seconds", "type", create, "outcome", "succeeded")
		wantDelta(t, before, after, 1, "mocd_fly_requests_total", "method", "POST", "route", "/v1/apps", "code_class", "2xx", "result", "ok")
		wantDelta(t, before, after, 1, "mocd_fly_requests_total", "method", "POST", "route", "/v1/apps/{app}/machines", "result", "ok")
		wantMoved(t, before, after, "mocd_fly_request_duration_seconds", "method", "GET", "route", "/v1/apps/{app}")
		wantDelta(t, before, after, 0, "mocd_fly_retries_total")
		// Asynq's own collector reports the queues.
		if _, ok := after["asynq_queue_latency_seconds"]; !ok || len(after.Labels("asynq_queue_size", "queue")) == 0 {
			t.Errorf("no Asynq queue metrics in %s", after)
		}
	})

	step(t, "an operation failing on a Fly 422", func(t *testing.T) {
		before := sys.Metrics(t)
		sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines", Status: http.StatusUnprocessableEntity})
		op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "metrics-422"})
		if d := sys.WaitOperation(t, token, op.ID); d.Status != "failed" || d.Error == nil || d.Error.Code != "fly_rejected" {
			t.Fatalf("create on a 422: %+v", d)
		}
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_operations_finished_total", "type", create, "outcome", "failed", "code", "fly_rejected")
		wantDelta(t, before, after, 0, "mocd_operations_finished_total", "outcome", "succeeded")
		wantDelta(t, before, after, 1, "mocd_operation_run_seconds", "type", create, "outcome", "failed")
		wantDelta(t, before, after, 1, "mocd_fly_requests_total", "method", "POST", "route", "/v1/apps/{app}/machines", "code_class", "4xx", "result", "rejected")
		wantDelta(t, before, after, 0, "mocd_fly_retries_total")
	})

	step(t, "a transient Fly failure retried", func(t *testing.T) {
		before := sys.Metrics(t)
		sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps", Status: http.StatusServiceUnavailable, Count: 2})
		op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "metrics-503"})
		if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
			t.Fatalf("create after two 503s: %+v", d)
		}
		after := sys.Metrics(t)
		wantDelta(t, before, after, 2, "mocd_fly_requests_total", "method", "POST", "route", "/v1/apps", "code_class", "5xx", "result", "transient")
		wantDelta(t, before, after, 2, "mocd_fly_retries_total", "method", "POST", "route", "/v1/apps")
		wantDelta(t, before, after, 1, "mocd_operations_finished_total", "type", create, "outcome", "succeeded")
	})

	step(t, "an idempotent replay", func(t *testing.T) {
		before := sys.Metrics(t)
		body := map[string]string{"subdomain": "metrics-idem"}
		first := sys.Do(t, http.MethodPost, "/api/v1/instances", token, body, "Idempotency-Key", "metrics-1")
		again := sys.Do(t, http.MethodPost, "/api/v1/instances", token, body, "Idempotency-Key", "metrics-1")
		other := sys.Do(t, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "metrics-other"}, "Idempotency-Key", "metrics-1")
		if first.Status != http.StatusAccepted || again.Header.Get("Idempotent-Replayed") != "true" || other.Status != http.StatusUnprocessableEntity {
			t.Fatalf("idempotency: %d, %d %v, %d", first.Status, again.Status, again.Header, other.Status)
		}
		var op Operation
		first.JSON(t, &op)
		sys.WaitOperation(t, token, op.ID)
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_idempotency_total", "result", "replayed")
		wantDelta(t, before, after, 1, "mocd_idempotency_total", "result", "reused")
		wantDelta(t, before, after, 1, "mocd_operations_accepted_total", "type", create)
	})

	step(t, "a webhook retried", func(t *testing.T) {
		rc := newReceiver(t, func(n int, w http.ResponseWriter) {
			if n == 1 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
		ep := createEndpoint(t, sys, token, rc.srv.URL, "operation.succeeded")
		before := sys.Metrics(t)
		d := sendTest(t, sys, token, ep.ID)
		if got := waitDelivery(t, sys, token, ep.ID, d.ID); got.Status != "succeeded" || got.Attempts != 2 {
			t.Fatalf("delivery %+v", got)
		}
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_webhook_attempts_total", "outcome", "retry", "attempt", "1")
		wantDelta(t, before, after, 1, "mocd_webhook_attempts_total", "outcome", "delivered", "attempt", "2")
		wantDelta(t, before, after, 2, "mocd_webhook_attempt_duration_seconds")
		wantDelta(t, before, after, 0, "mocd_webhook_endpoints_disabled_total")
	})

	step(t, "a receiver gone disables its endpoint", func(t *testing.T) {
		rc := newReceiver(t, func(int, http.ResponseWriter) {})
		rc.answer = func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusGone) }
		ep := createEndpoint(t, sys, token, rc.srv.URL, "operation.succeeded")
		before := sys.Metrics(t)
		d := sendTest(t, sys, token, ep.ID)
		if got := waitDelivery(t, sys, token, ep.ID, d.ID); got.Status != "failed" {
			t.Fatalf("delivery %+v", got)
		}
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_webhook_attempts_total", "outcome", "gone", "attempt", "1")
		wantDelta(t, before, after, 1, "mocd_webhook_endpoints_disabled_total")
	})

	step(t, "queue depth, then the relay after a Redis flush", func(t *testing.T) {
		sys.StopWorker()
		before := sys.Metrics(t)
		var ops []Operation
		for _, sub := range []string{"metrics-flush-1", "metrics-flush-2"} {
			ops = append(ops, accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": sub}))
		}
		queued := sys.Metrics(t)
		if n := queued.Value("asynq_queue_size", "queue", "lifecycle"); n < 2 {
			t.Errorf("asynq_queue_size{queue=lifecycle} = %v with two operations queued and no worker", n)
		}
		if err := sys.Redis.Client().FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		sys.StartWorker()
		for _, op := range ops {
			if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
				t.Fatalf("%s after the flush: %+v", op.ID, d)
			}
		}
		after := sys.Metrics(t)
		// At least both: a pass that read an operation just before it
		// finished queues a task its worker then skips, which counts too.
		if got := delta(before, after, "mocd_relay_requeued_total", "kind", "operation", "reason", "missing"); got < 2 {
			t.Errorf("mocd_relay_requeued_total{operation,missing} moved by %v, want at least 2", got)
		}
		wantDelta(t, before, after, 0, "mocd_relay_requeued_total", "kind", "operation", "reason", "rescue")
		wantDelta(t, before, after, 2, "mocd_operations_finished_total", "type", create, "outcome", "succeeded")
	})

	step(t, "drift found and repaired", func(t *testing.T) {
		op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "metrics-drift"})
		sys.WaitOperation(t, token, op.ID)
		before := sys.Metrics(t)
		m := sys.MachinesOf(op.InstanceID)[0]
		if err := sys.Flysim.SetState(worker.AppName(op.InstanceID), m.ID, "stopped"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, "the reconciler to see the stopped machine", func() bool {
			return getInstance(t, sys, token, op.InstanceID).Status == "stopped"
		})
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_reconciler_drift_found_total", "observed", "stopped")
		wantDelta(t, before, after, 1, "mocd_reconciler_drift_repaired_total", "observed", "stopped")
	})
}

// TestMetricsOfTheRateLimiter: each refusal counts under the policy that
// refused it, and with Redis gone each 503 counts as the limiter failing
// closed (the alert RateLimiterFailingClosed reads that series).
func TestMetricsOfTheRateLimiter(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")

	t.Run("a key over its minute", func(t *testing.T) {
		before := sys.Metrics(t)
		callUntilRefused(t, sys, token, 300)
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_ratelimit_refusals_total", "policy", "key-minute")
		wantDelta(t, before, after, 1, "mocd_ratelimit_refusals_total")
		wantDelta(t, before, after, 0, "mocd_ratelimit_unavailable_total")
	})

	t.Run("Redis gone: failing closed", func(t *testing.T) {
		_, fresh := sys.NewAccount(t, "pro")
		before := sys.Metrics(t)
		sys.Redis.Stop()
		for range 3 {
			if r := sys.Do(t, http.MethodGet, "/api/v1/instances", fresh, nil); r.Status != http.StatusServiceUnavailable || r.Code(t) != "rate_limiter_unavailable" {
				t.Fatalf("Redis down: %d %s", r.Status, r.Body)
			}
		}
		during := sys.Metrics(t) // /metrics answers without Redis
		sys.Redis.Start()
		wantDelta(t, before, during, 3, "mocd_ratelimit_unavailable_total")
		wantDelta(t, before, during, 0, "mocd_ratelimit_refusals_total")
		testenv.Eventually(t, "calls to pass again", func() bool {
			return sys.Do(t, http.MethodGet, "/api/v1/instances", fresh, nil).Status == http.StatusOK
		})
	})
	// Last: the address then stays refused for a while, good tokens too.
	t.Run("an address over its failed authentications", func(t *testing.T) {
		before := sys.Metrics(t)
		callUntilRefused(t, sys, "moc_"+strings.Repeat("x", 40), 200)
		after := sys.Metrics(t)
		wantDelta(t, before, after, 1, "mocd_ratelimit_refusals_total", "policy", "address-minute")
		wantDelta(t, before, after, 1, "mocd_ratelimit_refusals_total")
	})
}

// callUntilRefused lists keys with token until the answer is a 429, and
// fails the test if max calls bring none.
func callUntilRefused(t *testing.T, sys *System, token string, max int) {
	t.Helper()
	for range max {
		if sys.Do(t, http.MethodGet, "/api/v1/keys", token, nil).Status == http.StatusTooManyRequests {
			return
		}
	}
	t.Fatalf("%d calls and no 429", max)
}

// TestWorkerProcessServesItsOwnMetrics runs `mocd worker` as a process of
// its own (the in-process worker stopped) and scrapes its /metrics on
// MOC_METRICS_LISTEN: the operation it carried out moves its series, not
// the api's, and the api's series are not in it.
func TestWorkerProcessServesItsOwnMetrics(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	sys.StopWorker()
	p := startWorkerProcess(t, sys, buildMocd(t))
	url := "http://" + p.listening(t) + "/metrics"
	_, token := sys.NewAccount(t, "pro")
	const create = "instance.create"

	before, apiBefore := Scrape(t, url, ""), sys.Metrics(t)
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "own-metrics"})
	if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
		t.Fatalf("create: %+v", d)
	}
	after, apiAfter := Scrape(t, url, ""), sys.Metrics(t)
	wantDelta(t, before, after, 1, "mocd_operations_started_total", "type", create)
	wantDelta(t, before, after, 1, "mocd_operations_finished_total", "type", create, "outcome", "succeeded", "code", "none")
	wantDelta(t, before, after, 1, "mocd_operation_run_seconds", "type", create, "outcome", "succeeded")
	wantDelta(t, before, after, 1, "mocd_fly_requests_total", "method", "POST", "route", "/v1/apps", "result", "ok")
	for _, f := range []string{"asynq_queue_size", "mocd_relay_requeued_total", "mocd_webhook_attempts_total", "go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := after[f]; !ok {
			t.Errorf("no %s in the worker's /metrics: %s", f, after)
		}
	}
	for _, f := range []string{"mocd_http_requests_total", "mocd_operations_accepted_total"} {
		if _, ok := after[f]; ok {
			t.Errorf("the api's %s is in the worker's /metrics", f)
		}
	}
	// The api counted the accept; the run is the other process's.
	wantDelta(t, apiBefore, apiAfter, 1, "mocd_operations_accepted_total", "type", create)
	wantDelta(t, apiBefore, apiAfter, 0, "mocd_operations_finished_total")
}
