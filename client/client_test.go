package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests pin the client's transport rules against a scripted
// httptest server; the tests in the server's repository run the same
// client against a real mocd.

// seen is what a scripted server received.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
	at   []time.Time
}

func (s *seen) add(r *http.Request) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	s.at = append(s.at, time.Now())
	return len(s.reqs)
}

func (s *seen) all() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// script serves answers in turn: each is (status, headers, body); the last
// repeats.
type answer struct {
	status int
	header map[string]string
	body   string
	hangUp bool // close the connection without answering
}

func scripted(t *testing.T, answers ...answer) (*Client, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.add(r)
		a := answers[min(n, len(answers))-1]
		if a.hangUp {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close()
			return
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("X-Request-Id", fmt.Sprintf("req_%d", n))
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	c, err := New("moc_test_token", WithBaseURL(srv.URL+"/api/v1/"),
		WithRetryPolicy(RetryPolicy{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

const opJSON = `{"id":"op_1","type":"instance.create","status":"pending","instance_id":"inst_1","created_at":"2026-11-30T00:00:00Z","started_at":null,"finished_at":null,"error":null}`

func TestRetriesKeepTheIdempotencyKey(t *testing.T) {
	c, s := scripted(t,
		answer{hangUp: true},
		answer{status: 503, body: `{"error":"busy","code":"rate_limiter_unavailable"}`},
		answer{status: 429, body: `{"error":"slow down","code":"rate_limited"}`},
		answer{status: 502, body: `<html>bad gateway</html>`},
		answer{status: 202, body: opJSON},
	)
	op, err := c.CreateInstance(context.Background(), CreateInstanceRequest{Subdomain: "my-claw"})
	if err != nil {
		t.Fatal(err)
	}
	if op.ID != "op_1" || op.Status != OperationPending {
		t.Fatalf("op = %+v", op)
	}
	reqs := s.all()
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5", len(reqs))
	}
	key := reqs[0].Header.Get("Idempotency-Key")
	if len(key) != 36 {
		t.Fatalf("generated key %q is not a UUID", key)
	}
	for i, r := range reqs {
		if got := r.Header.Get("Idempotency-Key"); got != key {
			t.Errorf("attempt %d sent key %q, want %q", i+1, got, key)
		}
		if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "moc-go/"+Version+" (") {
			t.Errorf("User-Agent %q", ua)
		}
		if r.Header.Get("Authorization") != "Bearer moc_test_token" || r.URL.Path != "/api/v1/instances" || r.Method != "POST" {
			t.Errorf("attempt %d: %s %s auth %q", i+1, r.Method, r.URL.Path, r.Header.Get("Authorization"))
		}
	}
	// A second call gets a key of its own.
	if _, err := c.CreateInstance(context.Background(), CreateInstanceRequest{Subdomain: "other"}); err != nil {
		t.Fatal(err)
	}
	if again := s.all()[5].Header.Get("Idempotency-Key"); again == key {
		t.Error("two calls shared one idempotency key")
	}
}

func TestCallersIdempotencyKeyAndNoneOnReads(t *testing.T) {
	c, s := scripted(t, answer{status: 202, body: opJSON})
	if _, err := c.RestartInstance(context.Background(), "inst_1", WithIdempotencyKey("deploy-abc123"), WithRequestID("req_mine")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetOperation(context.Background(), "op_1"); err != nil {
		t.Fatal(err)
	}
	reqs := s.all()
	if k := reqs[0].Header.Get("Idempotency-Key"); k != "deploy-abc123" {
		t.Errorf("key %q, want the caller's", k)
	}
	if id := reqs[0].Header.Get("X-Request-Id"); id != "req_mine" {
		t.Errorf("X-Request-Id %q", id)
	}
	if k := reqs[1].Header.Get("Idempotency-Key"); k != "" {
		t.Errorf("a GET carried Idempotency-Key %q", k)
	}
}

func TestNeverRetriesOtherClientErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{400, "invalid_request"}, {401, "unauthorized"}, {403, "insufficient_scope"}, {404, "not_found"},
		{409, "subdomain_taken"}, {409, "idempotency_key_in_use"}, {422, "idempotency_key_reused"}, {500, "internal_error"},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.code), func(t *testing.T) {
			c, s := scripted(t, answer{status: tc.status, body: `{"error":"nope","code":"` + tc.code + `"}`})
			_, err := c.CreateInstance(context.Background(), CreateInstanceRequest{Subdomain: "x-y-z"})
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Code != tc.code || apiErr.Message != "nope" || apiErr.RequestID != "req_1" {
				t.Errorf("APIError = %+v", apiErr)
			}
			if n := len(s.all()); n != 1 {
				t.Errorf("%d requests, want 1 (no retry)", n)
			}
		})
	}
}

// A 409 idempotency_key_in_use after our own attempt was cut means that
// attempt is still running: the retry waits for its stored answer.
func TestRetriesOwnKeyInUse(t *testing.T) {
	c, s := scripted(t,
		answer{hangUp: true},
		answer{status: 409, body: `{"error":"in flight","code":"idempotency_key_in_use"}`},
		answer{status: 202, body: opJSON, header: map[string]string{"Idempotent-Replayed": "true"}},
	)
	if _, err := c.StopInstance(context.Background(), "inst_1"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.all()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestRetryBudget(t *testing.T) {
	c, s := scripted(t, answer{status: 503, body: `{"error":"busy","code":"timeout"}`})
	c.retry = RetryPolicy{MaxRetries: 2, MinBackoff: time.Millisecond}.withDefaults()
	_, err := c.ListInstances(context.Background())
	if StatusOf(err) != 503 || CodeOf(err) != "timeout" {
		t.Fatalf("err = %v", err)
	}
	if n := len(s.all()); n != 3 {
		t.Errorf("%d requests, want 3 (1 + 2 retries)", n)
	}
}

// The retry after a 429 is never sent before Retry-After has passed.
func TestHonoursRetryAfter(t *testing.T) {
	c, s := scripted(t,
		answer{status: 429, header: map[string]string{"Retry-After": "1"}, body: `{"error":"slow","code":"rate_limited"}`},
		answer{status: 200, body: `[]`},
	)
	if _, err := c.ListInstances(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	gap := s.at[1].Sub(s.at[0])
	s.mu.Unlock()
	if gap < time.Second {
		t.Errorf("retried %s after a Retry-After of 1 s", gap)
	}
}

// A Retry-After beyond the context's deadline is answered at once with the
// 429, not after a sleep that cannot end in a retry.
func TestRetryAfterPastDeadline(t *testing.T) {
	c, s := scripted(t, answer{status: 429, header: map[string]string{"Retry-After": "30"}, body: `{"error":"slow","code":"rate_limited"}`})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.ListInstances(ctx)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.RetryAfter != 30*time.Second {
		t.Fatalf("err = %v, want the 429 with its Retry-After", err)
	}
	if n := len(s.all()); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestNonJSONError(t *testing.T) {
	c, _ := scripted(t, answer{status: 404, body: "<html>not here</html>"})
	_, err := c.GetAccount(context.Background())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || !strings.Contains(apiErr.Message, "not here") {
		t.Fatalf("err = %v", err)
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://www.myopenclaw.cloud":            "https://www.myopenclaw.cloud",
		"https://www.myopenclaw.cloud/":           "https://www.myopenclaw.cloud",
		"https://www.myopenclaw.cloud/api/v1":     "https://www.myopenclaw.cloud",
		"http://127.0.0.1:8080/api/v1/":           "http://127.0.0.1:8080",
		"https://proxy.example/moc/api/v1":        "https://proxy.example/moc",
		"  https://www.myopenclaw.cloud/api/v1  ": "https://www.myopenclaw.cloud",
	} {
		c, err := New("t", WithBaseURL(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := c.BaseURL(); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", "www.myopenclaw.cloud", "ftp://x", "https://x/?q=1", "https://u:p@x"} {
		if _, err := New("t", WithBaseURL(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	def, _ := New("t")
	if def.BaseURL() != DefaultBaseURL {
		t.Errorf("default %q", def.BaseURL())
	}
	ua, _ := New("t", WithUserAgent("moc-cli/1.0"))
	if !strings.HasPrefix(ua.UserAgent(), "moc-cli/1.0 moc-go/"+Version) {
		t.Errorf("User-Agent %q", ua.UserAgent())
	}
}

func TestQueryEncoding(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	q := encodeQuery(ListLogsParams{KeyID: "key_1", From: from, Limit: 3})
	if q.Encode() != "from=2026-11-01T00%3A00%3A00Z&key_id=key_1&limit=3" {
		t.Errorf("query %s", q.Encode())
	}
	q = encodeQuery(ListEventsParams{Types: []WebhookEventType{EventOperationFailed, EventWebhookTest}})
	if q.Get("types") != "operation.failed,webhook.test" {
		t.Errorf("types %q", q.Get("types"))
	}
}
