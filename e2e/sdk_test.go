package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/client"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/ratelimit"
)

// The Go SDK (client/) against a whole mocd: its retries, iterators and
// Wait as a user's program meets them.

// counting is a transport that counts answers by status and path, and
// checks each against the OpenAPI document.
type counting struct {
	t      *testing.T
	mu     sync.Mutex
	status map[int]int
	paths  map[string]int
}

func newCounting(t *testing.T) *counting {
	return &counting{t: t, status: map[int]int{}, paths: map[string]int{}}
}

func (c *counting) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		checkContract(c.t, req, &Response{Status: resp.StatusCode, Header: resp.Header, Body: b})
	}
	c.mu.Lock()
	c.status[resp.StatusCode]++
	c.paths[req.Method+" "+req.URL.Path]++
	c.mu.Unlock()
	return resp, nil
}

func (c *counting) count(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status[status]
}

func (c *counting) calls(methodPath string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[methodPath]
}

func newSDK(t *testing.T, baseURL, token string, rt http.RoundTripper) *client.Client {
	t.Helper()
	c, err := client.New(token, client.WithBaseURL(baseURL+"/api/v1"), client.WithHTTPClient(&http.Client{Transport: rt}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cutProxy forwards HTTP/1.1 requests to the api, but for the first
// `cuts` requests matching method and path it lets the api answer in full
// (so the server has committed) and then closes the client's connection
// without a byte of the answer: the worst moment for a network to fail.
type cutProxy struct {
	URL    string
	method string
	path   string
	cuts   atomic.Int32
	mu     sync.Mutex
	keys   []string // Idempotency-Key of every matching request
	replay []string // Idempotent-Replayed of every matching answer
}

func startCutProxy(t *testing.T, backend, method, path string, cuts int) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{URL: "http://" + ln.Addr().String(), method: method, path: path}
	p.cuts.Store(int32(cuts))
	tr := &http.Transport{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait(); tr.CloseIdleConnections() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				p.serve(conn, backend, tr)
			}()
		}
	}()
	return p
}

func (p *cutProxy) serve(conn net.Conn, backend string, tr *http.Transport) {
	br := bufio.NewReader(conn)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		req.RequestURI = ""
		req.URL.Scheme, req.URL.Host = "http", strings.TrimPrefix(backend, "http://")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return
		}
		if req.Method == p.method && req.URL.Path == p.path {
			p.mu.Lock()
			p.keys = append(p.keys, req.Header.Get("Idempotency-Key"))
			p.replay = append(p.replay, resp.Header.Get("Idempotent-Replayed"))
			p.mu.Unlock()
			if p.cuts.Add(-1) >= 0 {
				return // the api answered; the client never hears it
			}
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.TransferEncoding = nil
		if err := resp.Write(conn); err != nil {
			return
		}
	}
}

// A create whose answer is lost after the server committed it is retried
// by the SDK with the same Idempotency-Key, gets the stored answer, and the
// account holds exactly one instance and one operation.
func TestSDKRetriesACutCreateOnce(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	acct, token := sys.NewAccount(t, "pro")
	proxy := startCutProxy(t, sys.URL, http.MethodPost, "/api/v1/instances", 2)
	c := newSDK(t, proxy.URL, token, http.DefaultTransport)

	op, err := c.CreateInstance(context.Background(), client.CreateInstanceRequest{Subdomain: "cut-claw"})
	if err != nil {
		t.Fatalf("CreateInstance through a connection cut twice: %v", err)
	}
	proxy.mu.Lock()
	keys, replays := proxy.keys, proxy.replay
	proxy.mu.Unlock()
	if len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Fatalf("Idempotency-Keys sent: %q, want one key three times", keys)
	}
	if replays[0] != "" || replays[1] != "true" || replays[2] != "true" {
		t.Fatalf("Idempotent-Replayed of the answers: %q, want the first fresh and the retries replayed", replays)
	}
	var ops, insts int
	if err := sys.Store.DB.Get(&ops, `SELECT count(*) FROM operations o JOIN instances i ON i.id = o.instance_id WHERE i.account_id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	if err := sys.Store.DB.Get(&insts, `SELECT count(*) FROM instances WHERE account_id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	if ops != 1 || insts != 1 {
		t.Fatalf("the server holds %d operations and %d instances, want 1 and 1", ops, insts)
	}
	done, err := c.Wait(context.Background(), op.ID)
	if err != nil || done.Status != client.OperationSucceeded || done.ID != op.ID {
		t.Fatalf("Wait: %+v, %v", done, err)
	}
	if n := len(sys.MachinesOf(op.InstanceID)); n != 1 {
		t.Fatalf("flysim holds %d machines for the instance", n)
	}
}

// A key whose allowance is spent is throttled with 429s; the SDK waits out
// each Retry-After and every call still succeeds.
func TestSDKFinishesEveryCallUnderRateLimit(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	acct, token := sys.NewAccount(t, "pro")
	keyID, _, err := apikey.Parse(token)
	if err != nil {
		t.Fatal(err)
	}
	// Spend the key's burst through the api's own limiter: from here on the
	// key may make one request per 500 ms (pro: 120 a minute).
	spender := ratelimit.New(sys.Redis.Client(), ratelimit.Options{Prefix: "e2e:rl:", Timeout: 5 * time.Second})
	for {
		res, err := spender.Allow(context.Background(), ratelimit.ForPlan("pro", keyID, acct))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed {
			break
		}
	}
	cnt := newCounting(t)
	c := newSDK(t, sys.URL, token, cnt)
	const workers, each = 3, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var err error
				if (w+i)%2 == 0 {
					_, err = c.ListInstances(context.Background())
				} else {
					_, err = c.GetAccount(context.Background())
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a call failed under the rate limit: %v", err)
		}
	}
	if got := cnt.count(http.StatusOK); got != workers*each {
		t.Errorf("%d successful answers, want %d", got, workers*each)
	}
	if cnt.count(http.StatusTooManyRequests) == 0 {
		t.Fatal("no 429 was answered: the test did not exercise throttling")
	}
	t.Logf("%d calls, %d answered 429 first", workers*each, cnt.count(http.StatusTooManyRequests))
}

// AllOperations walks every page; the server's pages are of the size
// asked for, so 7 operations at 2 a page are 4 pages.
func TestSDKIteratorWalksPages(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	cnt := newCounting(t)
	c := newSDK(t, sys.URL, token, cnt)
	ctx := context.Background()

	create, err := c.CreateInstance(ctx, client.CreateInstanceRequest{Subdomain: "pages"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{create.ID}
	if _, err := c.Wait(ctx, create.ID); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for _, call := range []func(context.Context, string, ...client.CallOption) (*client.Operation, error){c.StopInstance, c.StartInstance} {
			op, err := call(ctx, create.InstanceID)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, op.ID)
			if _, err := c.Wait(ctx, op.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := cnt.calls("GET /api/v1/operations")
	var got []string
	for op, err := range c.AllOperations(ctx, client.ListOperationsParams{InstanceID: create.InstanceID, Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, op.ID)
	}
	pages := cnt.calls("GET /api/v1/operations") - before
	if pages != 4 {
		t.Errorf("%d pages fetched, want 4 (7 operations, 2 a page)", pages)
	}
	if len(got) != len(want) {
		t.Fatalf("iterated %d operations, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[len(want)-1-i] {
			t.Fatalf("operation %d is %s, want %s (newest first)", i, got[i], want[len(want)-1-i])
		}
	}
	// Breaking early fetches no further page.
	before = cnt.calls("GET /api/v1/operations")
	for range c.AllOperations(ctx, client.ListOperationsParams{Limit: 2}) {
		break
	}
	if n := cnt.calls("GET /api/v1/operations") - before; n != 1 {
		t.Errorf("a loop that stopped at the first item fetched %d pages", n)
	}
}

// Wait returns when the operation ends, and a failed one is a typed error.
func TestSDKWait(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{FlysimDelay: 50 * time.Millisecond})
	_, token := sys.NewAccount(t, "pro")
	cnt := newCounting(t)
	c := newSDK(t, sys.URL, token, cnt)
	ctx := context.Background()

	op, err := c.CreateInstance(ctx, client.CreateInstanceRequest{Subdomain: "waiter"})
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.Wait(ctx, op.ID)
	if err != nil || done.Status != client.OperationSucceeded || done.FinishedAt == nil {
		t.Fatalf("Wait: %+v, %v", done, err)
	}
	// One long-poll on the wait route, no polling.
	if polls, waits := cnt.calls("GET /api/v1/operations/"+op.ID), cnt.calls("GET /api/v1/operations/"+op.ID+"/wait"); polls != 0 || waits < 1 {
		t.Errorf("Wait made %d polls and %d long-polls; want only long-polls", polls, waits)
	}
	// Returned when it ended: the instance is settled at once.
	inst, err := c.GetInstance(ctx, op.InstanceID)
	if err != nil || inst.Status != client.InstanceRunning {
		t.Fatalf("after Wait: %+v, %v", inst, err)
	}

	// No worker: the operation stays pending, and a short deadline ends
	// the wait with the operation as last seen.
	sys.StopWorker()
	restart, err := c.RestartInstance(ctx, op.InstanceID)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	last, err := c.Wait(short, restart.ID)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || last == nil || last.Status != client.OperationPending {
		t.Fatalf("Wait past its deadline: %+v, %v", last, err)
	}
	sys.StartWorker()
	if done, err := c.Wait(ctx, restart.ID); err != nil || done.Status != client.OperationSucceeded {
		t.Fatalf("Wait after the worker came back: %+v, %v", done, err)
	}

	// An unknown operation is the API's 404, not a wait forever.
	if _, err := c.Wait(ctx, "op_doesnotexist"); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("Wait on an unknown operation: %v", err)
	}

	// A failed operation: *OperationFailedError, with the operation's error.
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines/{id}/stop", Status: http.StatusUnprocessableEntity, Count: 1})
	stop, err := c.StopInstance(ctx, op.InstanceID)
	if err != nil {
		t.Fatal(err)
	}
	failed, err := c.Wait(ctx, stop.ID)
	var opErr *client.OperationFailedError
	if !errors.As(err, &opErr) || opErr.Operation.ID != stop.ID || failed.Status != client.OperationFailed ||
		failed.Error == nil || failed.Error.Code != "fly_rejected" {
		t.Fatalf("Wait on a failing stop: %+v, %v", failed, err)
	}
}

// AllEvents walks the feed a page at a time, oldest first, and stops once
// it has caught up (the feed's next_cursor then repeats the last one).
func TestSDKEventFeed(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	cnt := newCounting(t)
	c := newSDK(t, sys.URL, token, cnt)
	ctx := context.Background()
	op, err := c.CreateInstance(ctx, client.CreateInstanceRequest{Subdomain: "feed-walker"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	restart, err := c.RestartInstance(ctx, op.InstanceID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, restart.ID); err != nil {
		t.Fatal(err)
	}
	var types []client.WebhookEventType
	for ev, err := range c.AllEvents(ctx, client.ListEventsParams{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type)
	}
	pages := cnt.calls("GET /api/v1/events")
	if len(types) < 4 || types[len(types)-1] != client.EventOperationSucceeded || pages != len(types)+1 {
		t.Fatalf("AllEvents: %v over %d pages (want one page per event and one that finds nothing new)", types, pages)
	}
	var ops int
	for _, ty := range types {
		if ty == client.EventOperationSucceeded {
			ops++
		}
	}
	if ops != 2 {
		t.Errorf("%d operation.succeeded events, want 2 (create, restart): %v", ops, types)
	}
}
