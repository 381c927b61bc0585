package main

import (
	"bytes"
	"context"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/webhook"
)

// syncBuffer lets the test read what the server's goroutines log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type bundle struct {
	srv    *httptest.Server
	secret string
	out    *syncBuffer
}

func setup(t *testing.T) bundle {
	t.Helper()
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	srv := httptest.NewServer(newReceiver(secret, log.New(out, "", 0)))
	t.Cleanup(srv.Close)
	return bundle{srv: srv, secret: secret, out: out}
}

// deliver posts body signed with secret as mocd would, and returns the status.
func deliver(t *testing.T, b bundle, secret, id string, body string) int {
	t.Helper()
	h, err := webhook.Headers(secret, id, time.Now(), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, b.srv.URL+"/webhooks", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const event = `{"type":"operation.succeeded","timestamp":"2026-03-01T12:00:00Z","data":{"operation_id":"op_123"}}`

func TestReceiverAcceptsAndDeduplicates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for range 2 {
		if got := deliver(t, b, b.secret, "msg_1", event); got != http.StatusNoContent {
			t.Fatalf("status %d, want 204", got)
		}
	}
	out := b.out.String()
	if n := strings.Count(out, `operation.succeeded at 2026-03-01T12:00:00Z: {"operation_id":"op_123"}`); n != 1 {
		t.Fatalf("event printed %d times, want once; output:\n%s", n, out)
	}
	if !strings.Contains(out, "duplicate msg_1") {
		t.Fatalf("duplicate not reported; output:\n%s", out)
	}
}

func TestReceiverRefusesBadSignature(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if got := deliver(t, b, other, "msg_2", event); got != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", got)
	}
	resp, err := b.srv.Client().Post(b.srv.URL, "application/json", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned: status %d, want 401", resp.StatusCode)
	}
	if strings.Contains(b.out.String(), "op_123") {
		t.Fatal("a refused event was printed")
	}
}

func TestRunRefusesBadSecret(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "whsec_%%%"} {
		getenv := func(string) string { return s }
		if err := run(context.Background(), []string{"-listen", "127.0.0.1:0"}, getenv, &bytes.Buffer{}); err == nil {
			t.Errorf("secret %q accepted", s)
		}
	}
}
