package api_test

import (
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/testenv"
)

func TestHealthReadyMetricsAndRequestID(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro")
	if r := e.do("GET", "/healthz", "", nil); r.Status != 200 {
		t.Errorf("healthz: %d", r.Status)
	}
	if r := e.do("GET", "/readyz", "", nil); r.Status != 200 {
		t.Errorf("readyz: %d %s", r.Status, r.Body)
	}

	r := e.do("GET", "/api/v1/keys", tok, nil, "X-Request-Id", "ci-run-42")
	if r.Header.Get("X-Request-Id") != "ci-run-42" {
		t.Errorf("X-Request-Id not echoed: %q", r.Header.Get("X-Request-Id"))
	}
	// The access log line has it once, from the request's context.
	testenv.Eventually(t, "the access log line of ci-run-42", func() bool {
		return strings.Contains(e.logs.String(), `"request_id":"ci-run-42"`)
	})
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, "ci-run-42") && strings.Count(line, `"request_id"`) != 1 {
			t.Errorf("log line with request_id not exactly once: %s", line)
		}
	}
	if r := e.do("GET", "/api/v1/nothing-here", tok, nil); r.Status != 404 || r.Code(t) != "not_found" || !strings.HasPrefix(r.Header.Get("X-Request-Id"), "req_") {
		t.Errorf("unknown route: %d %s %q", r.Status, r.Body, r.Header.Get("X-Request-Id"))
	}
	if r := e.do("PUT", "/api/v1/keys", tok, nil); r.Status != 405 || r.Code(t) != "method_not_allowed" {
		t.Errorf("wrong method: %d %s", r.Status, r.Body)
	}

	m := e.do("GET", "/metrics", "", nil)
	if m.Status != 200 || !strings.Contains(string(m.Body), `mocd_http_requests_total{method="GET",route="/api/v1/keys",status="200"}`) {
		t.Errorf("metrics: %d\n%s", m.Status, m.Body)
	}

	e.redis.Stop()
	if r := e.do("GET", "/readyz", "", nil); r.Status != 503 || !strings.Contains(string(r.Body), `"redis":"unreachable"`) {
		t.Errorf("readyz without Redis: %d %s", r.Status, r.Body)
	}
	e.redis.Start()
	testenv.Eventually(t, "readyz to recover", func() bool { return e.do("GET", "/readyz", "", nil).Status == 200 })
}
