package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/myopenclaw/mocd/e2e"
	"github.com/myopenclaw/mocd/testenv"
)

// background runs moc until the test stops it, its output readable while
// it runs.
type background struct {
	stdout, stderr *testenv.Buffer
	cancel         context.CancelFunc
	done           chan struct{} // closed once run has returned code
	code           int
}

func (c *cli) start(args ...string) *background {
	b := &background{stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() {
		defer close(b.done)
		b.code = run(ctx, args, IO{
			Stdin: strings.NewReader(""), Stdout: b.stdout, Stderr: b.stderr,
			Getenv:     func(k string) string { return c.env[k] },
			HTTPClient: &http.Client{Transport: contractChecker{t: c.t}},
		})
	}()
	c.t.Cleanup(func() { cancel(); <-b.done })
	return b
}

// stop ends the command as Ctrl-C would and answers its exit code.
func (b *background) stop() int {
	b.cancel()
	<-b.done
	return b.code
}

// TestCancelEventsAndListen: `operations cancel`, `events` and `events
// --follow` against the real feed, and `webhooks listen` forwarding an
// event that the official Standard Webhooks library verifies.
func TestCancelEventsAndListen(t *testing.T) {
	t.Parallel()
	sys := e2e.Start(t, e2e.Options{})
	_, token := sys.NewAccount(t, "pro")
	moc := newCLI(t, sys, token)
	var create operation
	moc.ok(&create, "instances", "create", "--subdomain", "feed", "--wait")
	id := create.InstanceID

	// cancel: a pending restart (no worker takes it) is cancelled; waiting
	// on it then exits 1; cancelling a finished one is the API's 409.
	sys.StopWorker()
	var pending, cancelled, waited operation
	moc.ok(&pending, "instances", "restart", id)
	moc.ok(&cancelled, "operations", "cancel", pending.ID)
	sys.StartWorker()
	if cancelled.ID != pending.ID || cancelled.Status != "cancelled" {
		t.Fatalf("operations cancel printed %+v", cancelled)
	}
	r := moc.fails(exitFailed, "operations", "wait", pending.ID)
	r.JSON(t, &waited)
	if waited.Status != "cancelled" || !strings.Contains(r.stderr, "cancelled") {
		t.Fatalf("operations wait on a cancelled operation: %+v, stderr %q", waited, r.stderr)
	}
	r = moc.fails(exitAPI, "operations", "cancel", create.ID)
	if !strings.Contains(r.stderr, "operation_not_cancellable") {
		t.Errorf("cancel of a finished operation: stderr %q", r.stderr)
	}

	// events: the feed so far, oldest first, and the cursor to go on from.
	var page struct {
		Data []struct {
			ID   string          `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"data"`
		NextCursor *string `json:"next_cursor"`
	}
	moc.ok(&page, "events", "--types", "operation.succeeded,operation.cancelled")
	if len(page.Data) != 2 || page.Data[0].Type != "operation.succeeded" || page.Data[1].Type != "operation.cancelled" || page.NextCursor == nil {
		t.Fatalf("events: %+v", page)
	}
	cursor := *page.NextCursor

	// A restart after the cursor: events --follow and listen both start
	// from the cursor, so neither can miss it by connecting late.
	var restart operation
	moc.ok(&restart, "instances", "restart", id, "--wait")

	follow := moc.start("-o", "json", "events", "--follow", "--after", cursor, "--types", "operation.succeeded")
	testenv.Eventually(t, "the restart's event on events --follow", func() bool {
		return strings.Contains(follow.stdout.String(), restart.ID)
	})
	if code := follow.stop(); code != exitOK {
		t.Errorf("events --follow ended with %d after Ctrl-C; stderr %s", code, follow.stderr.String())
	}
	line, _, _ := strings.Cut(follow.stdout.String(), "\n")
	var streamed struct {
		ID     string `json:"id"`
		Type   string `json:"type"`
		Cursor string `json:"cursor"`
		Data   struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(line), &streamed); err != nil || streamed.Type != "operation.succeeded" ||
		streamed.Data.ID != restart.ID || streamed.Cursor == "" || !strings.HasPrefix(streamed.ID, "evt_") {
		t.Fatalf("events --follow line %q (%v)", line, err)
	}

	// listen: a receiver that verifies with the official library.
	type got struct {
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var received []got
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		received = append(received, got{header: r.Header.Clone(), body: body})
	}))
	defer recv.Close()
	listen := moc.start("-o", "json", "webhooks", "listen", "--forward-to", recv.URL+"/hooks", "--after", cursor)
	var secret string
	testenv.Eventually(t, "listen's signing secret", func() bool {
		m := regexp.MustCompile(`Signing secret: (whsec_\S+)`).FindStringSubmatch(listen.stderr.String())
		if m != nil {
			secret = m[1]
		}
		return m != nil
	})
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listen stdout:\n%s\nlisten stderr:\n%s", listen.stdout.String(), listen.stderr.String())
		}
	})
	// The restart's events end with its operation.succeeded.
	testenv.Eventually(t, "the restart's operation.succeeded at the receiver", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, g := range received {
			if strings.Contains(string(g.body), `"type":"operation.succeeded"`) && strings.Contains(string(g.body), restart.ID) {
				return true
			}
		}
		return false
	})
	if code := listen.stop(); code != exitOK {
		t.Errorf("listen ended with %d; stderr %s", code, listen.stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	var sawOp bool
	for _, g := range received {
		if err := ref.Verify(g.body, g.header); err != nil {
			t.Errorf("the official Standard Webhooks library refuses a forwarded event: %v", err)
		}
		id := g.header.Get("webhook-id")
		var env struct {
			Type      string `json:"type"`
			Timestamp string `json:"timestamp"`
			Data      struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(g.body, &env); err != nil || env.Timestamp == "" || !strings.HasPrefix(id, "evt_") {
			t.Errorf("forwarded %s: %s (%v)", id, g.body, err)
		}
		sawOp = sawOp || (env.Type == "operation.succeeded" && env.Data.ID == restart.ID)
	}
	if !sawOp {
		t.Errorf("the restart's operation.succeeded was not forwarded: %d events", len(received))
	}
	lines := strings.Split(strings.TrimSpace(listen.stdout.String()), "\n")
	var fw forwarded
	if err := json.Unmarshal([]byte(lines[0]), &fw); err != nil || fw.StatusCode != 200 || fw.Error != "" {
		t.Errorf("listen's first line %q (%v)", lines[0], err)
	}
}
