package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/webhook"
	"github.com/myopenclaw/mocd/worker"
)

// received is one request a receiver got.
type received struct {
	At     time.Time
	Header http.Header
	Body   []byte
	Event  webhook.Event
}

// receiver is a webhook receiver on an httptest server. answer decides the
// status of the n-th request (from 1); nil answers 204.
type receiver struct {
	srv    *httptest.Server
	answer func(n int, w http.ResponseWriter)

	mu  sync.Mutex
	got []received
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var ev webhook.Event
		_ = json.Unmarshal(body, &ev)
		rc.mu.Lock()
		rc.got = append(rc.got, received{At: time.Now(), Header: r.Header.Clone(), Body: body, Event: ev})
		n := len(rc.got)
		rc.mu.Unlock()
		if rc.answer == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rc.answer(n, w)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// first waits for the first request whose event satisfies match.
func (rc *receiver) first(t *testing.T, what string, match func(webhook.Event) bool) received {
	t.Helper()
	var out received
	testenv.Eventually(t, what, func() bool {
		for _, r := range rc.requests() {
			if match(r.Event) {
				out = r
				return true
			}
		}
		return false
	})
	return out
}

// endpoint is the Endpoint object as a client decodes it.
type endpoint struct {
	ID             string    `json:"id"`
	URL            string    `json:"url"`
	Events         []string  `json:"events"`
	Enabled        bool      `json:"enabled"`
	DisabledReason *string   `json:"disabled_reason"`
	CreatedAt      time.Time `json:"created_at"`
	Secret         string    `json:"secret"`
}

// delivery is the Delivery object as a client decodes it.
type delivery struct {
	ID             string          `json:"id"`
	EndpointID     string          `json:"endpoint_id"`
	EventID        string          `json:"event_id"`
	EventType      string          `json:"event_type"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at"`
	LastStatusCode *int            `json:"last_status_code"`
	FailureReason  *string         `json:"failure_reason"`
	Payload        json.RawMessage `json:"payload"`
	AttemptLog     []struct {
		Attempt      int       `json:"attempt"`
		StatusCode   *int      `json:"status_code"`
		LatencyMS    int       `json:"latency_ms"`
		ResponseBody *string   `json:"response_body"`
		Error        *string   `json:"error"`
		CreatedAt    time.Time `json:"created_at"`
	} `json:"attempt_log"`
}

func createEndpoint(t testing.TB, sys *System, token, url string, events ...string) endpoint {
	t.Helper()
	r := sys.Do(t, http.MethodPost, "/api/v1/webhooks", token, map[string]any{"url": url, "events": events})
	if r.Status != http.StatusCreated {
		t.Fatalf("create webhook %s: %d %s", url, r.Status, r.Body)
	}
	var e endpoint
	r.JSON(t, &e)
	if !strings.HasPrefix(e.ID, "wh_") || !strings.HasPrefix(e.Secret, webhook.SecretPrefix) || !e.Enabled || e.URL != url {
		t.Fatalf("created endpoint %s", r.Body)
	}
	return e
}

func deliveries(t *testing.T, sys *System, token, endpointID string) []delivery {
	t.Helper()
	r := sys.Do(t, http.MethodGet, "/api/v1/webhooks/"+endpointID+"/deliveries", token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("deliveries: %d %s", r.Status, r.Body)
	}
	var page struct {
		Data       []delivery `json:"data"`
		NextCursor *string    `json:"next_cursor"`
	}
	r.JSON(t, &page)
	return page.Data
}

// waitDelivery waits until the endpoint's delivery id has finished and
// answers it as the api lists it. It watches Postgres while it waits, so
// that waiting spends none of the key's rate limit.
func waitDelivery(t *testing.T, sys *System, token, endpointID, deliveryID string) delivery {
	t.Helper()
	testenv.Eventually(t, "delivery "+deliveryID+" to finish", func() bool {
		d, err := store.WebhookDeliveryByID(context.Background(), sys.Store.DB, deliveryID)
		if err != nil {
			t.Fatalf("read delivery %s: %v", deliveryID, err)
		}
		return d.Status != store.DeliveryPending
	})
	for _, d := range deliveries(t, sys, token, endpointID) {
		if d.ID == deliveryID {
			return d
		}
	}
	t.Fatalf("delivery %s finished but is not listed", deliveryID)
	return delivery{}
}

func sendTest(t *testing.T, sys *System, token, endpointID string) delivery {
	t.Helper()
	r := sys.Do(t, http.MethodPost, "/api/v1/webhooks/"+endpointID+"/test", token, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("test webhook: %d %s", r.Status, r.Body)
	}
	var d delivery
	r.JSON(t, &d)
	if d.Status != "pending" || d.EventType != "webhook.test" || d.EndpointID != endpointID {
		t.Fatalf("test delivery %s", r.Body)
	}
	return d
}

func shortSchedule(s ...time.Duration) func(*worker.Options) {
	return func(o *worker.Options) { o.Webhooks.Schedule = s }
}

// TestOperationEventReachesReceiver: a real receiver gets operation.succeeded
// for a finished create, signed so that the official Standard Webhooks
// library verifies it, and only the events it subscribed to are queued.
func TestOperationEventReachesReceiver(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	rc := newReceiver(t, nil)
	ep := createEndpoint(t, sys, token, rc.srv.URL+"/hooks", "operation.succeeded")

	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "hooked-up"})
	sys.WaitOperation(t, token, op.ID)
	got := rc.first(t, "operation.succeeded", func(ev webhook.Event) bool { return ev.Type == "operation.succeeded" })

	ref, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Verify(got.Body, got.Header); err != nil {
		t.Fatalf("the Standard Webhooks library refuses the delivery: %v", err)
	}
	if err := webhook.Verify(ep.Secret, got.Header, got.Body); err != nil {
		t.Fatalf("webhook.Verify refuses the delivery: %v", err)
	}
	if ct, ua := got.Header.Get("Content-Type"), got.Header.Get("User-Agent"); ct != "application/json" || ua != worker.UserAgent {
		t.Fatalf("Content-Type %q, User-Agent %q", ct, ua)
	}
	var data Operation
	if err := json.Unmarshal(got.Event.Data, &data); err != nil || data.ID != op.ID || data.Status != "succeeded" || data.InstanceID != op.InstanceID {
		t.Fatalf("event data %s (%v)", got.Event.Data, err)
	}

	// The delivery records the one attempt; the receiver saw its id.
	d := waitDelivery(t, sys, token, ep.ID, got.Header.Get("webhook-id"))
	if d.Status != "succeeded" || d.ID != got.Header.Get("webhook-id") || d.EventType != "operation.succeeded" || d.Attempts != 1 ||
		len(d.AttemptLog) != 1 || *d.AttemptLog[0].StatusCode != 204 || d.NextAttemptAt != nil || string(d.Payload) != string(got.Body) {
		t.Fatalf("delivery %+v, webhook-id %s", d, got.Header.Get("webhook-id"))
	}
	// Subscribed to operation.succeeded only: no instance.status_changed
	// was queued for it, though the instance changed status.
	var n int
	if err := sys.Store.DB.Get(&n, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, ep.ID); err != nil || n != 1 {
		t.Fatalf("%d deliveries queued for the endpoint (%v), want 1", n, err)
	}
}

// TestRetriesKeepOneWebhookID: 500, 500, then 200 is three attempts of one
// delivery, all with the same webhook-id, each signed afresh and recorded.
// A receiver's Retry-After is honoured, and a delivery that never succeeds
// is given up when the schedule is exhausted.
func TestRetriesKeepOneWebhookID(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: shortSchedule(10*time.Millisecond, 10*time.Millisecond, 10*time.Millisecond)})
	_, token := sys.NewAccount(t, "pro")

	flaky := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "oops %d", n)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	ep := createEndpoint(t, sys, token, flaky.srv.URL, "webhook.test")
	d := waitDelivery(t, sys, token, ep.ID, sendTest(t, sys, token, ep.ID).ID)
	reqs := flaky.requests()
	if d.Status != "succeeded" || d.Attempts != 3 || len(d.AttemptLog) != 3 || len(reqs) != 3 {
		t.Fatalf("delivery %+v after %d requests", d, len(reqs))
	}
	for i, want := range []int{500, 500, 200} {
		a := d.AttemptLog[i]
		if a.Attempt != i+1 || a.StatusCode == nil || *a.StatusCode != want || a.Error != nil {
			t.Fatalf("attempt %d: %+v", i+1, a)
		}
	}
	if b := d.AttemptLog[0].ResponseBody; b == nil || *b != "oops 1" {
		t.Fatalf("attempt 1 recorded body %v", b)
	}
	for i, r := range reqs {
		if r.Header.Get("webhook-id") != d.ID {
			t.Fatalf("request %d has webhook-id %q, want %q", i+1, r.Header.Get("webhook-id"), d.ID)
		}
		if err := webhook.Verify(ep.Secret, r.Header, r.Body); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}

	// Retry-After: 1 stretches the 10ms retry to at least a second.
	slow := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ep2 := createEndpoint(t, sys, token, slow.srv.URL, "webhook.test")
	d2 := waitDelivery(t, sys, token, ep2.ID, sendTest(t, sys, token, ep2.ID).ID)
	if d2.Status != "succeeded" || len(d2.AttemptLog) != 2 {
		t.Fatalf("delivery %+v", d2)
	}
	if r := slow.requests(); len(r) != 2 || r[1].At.Sub(r[0].At) < time.Second {
		t.Fatalf("%d requests; the retry came too soon after a Retry-After of 1s", len(r))
	}
	if gap := d2.AttemptLog[1].CreatedAt.Sub(d2.AttemptLog[0].CreatedAt); gap < 900*time.Millisecond {
		t.Fatalf("retried %s after a Retry-After of 1s", gap)
	}

	// Always 500: four attempts (the first and three retries), then failed.
	broken := newReceiver(t, func(n int, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	ep3 := createEndpoint(t, sys, token, broken.srv.URL, "webhook.test")
	d3 := waitDelivery(t, sys, token, ep3.ID, sendTest(t, sys, token, ep3.ID).ID)
	if d3.Status != "failed" || d3.Attempts != 4 || len(d3.AttemptLog) != 4 || d3.FailureReason == nil ||
		*d3.FailureReason != "gave up after 4 attempts" || len(broken.requests()) != 4 {
		t.Fatalf("delivery %+v after %d requests", d3, len(broken.requests()))
	}
}

// TestGoneDisablesEndpoint: a 410 ends the delivery at once and disables
// the endpoint; testing it then is a 409 until it is enabled again.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: shortSchedule(10 * time.Millisecond)})
	_, token := sys.NewAccount(t, "pro")
	gone := newReceiver(t, func(n int, w http.ResponseWriter) { w.WriteHeader(http.StatusGone) })
	ep := createEndpoint(t, sys, token, gone.srv.URL, "webhook.test", "operation.succeeded")

	d := waitDelivery(t, sys, token, ep.ID, sendTest(t, sys, token, ep.ID).ID)
	if d.Status != "failed" || d.Attempts != 1 || *d.AttemptLog[0].StatusCode != 410 || d.FailureReason == nil ||
		!strings.Contains(*d.FailureReason, "410") {
		t.Fatalf("delivery %+v", d)
	}
	var list []endpoint
	sys.Do(t, http.MethodGet, "/api/v1/webhooks", token, nil).JSON(t, &list)
	if len(list) != 1 || list[0].Enabled || list[0].DisabledReason == nil || *list[0].DisabledReason != worker.ReasonGone {
		t.Fatalf("endpoints after 410: %+v", list)
	}
	r := sys.Do(t, http.MethodPost, "/api/v1/webhooks/"+ep.ID+"/test", token, nil)
	if r.Status != http.StatusConflict || r.Code(t) != "webhook_disabled" {
		t.Fatalf("test of a disabled endpoint: %d %s", r.Status, r.Body)
	}
	// A disabled endpoint gets no events.
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "gone-away"})
	sys.WaitOperation(t, token, op.ID)
	if n := len(deliveries(t, sys, token, ep.ID)); n != 1 {
		t.Fatalf("%d deliveries to a disabled endpoint", n)
	}

	r = sys.Do(t, http.MethodPatch, "/api/v1/webhooks/"+ep.ID, token, map[string]any{"enabled": true})
	var again endpoint
	r.JSON(t, &again)
	if r.Status != http.StatusOK || !again.Enabled || again.DisabledReason != nil {
		t.Fatalf("re-enable: %d %s", r.Status, r.Body)
	}
	if r := sys.Do(t, http.MethodPost, "/api/v1/webhooks/"+ep.ID+"/test", token, nil); r.Status != http.StatusAccepted {
		t.Fatalf("test after re-enabling: %d %s", r.Status, r.Body)
	}
}

// TestPrivateURLsRefused: with private addresses not allowed, the api
// refuses URLs on private, loopback and link-local addresses, or names that
// resolve to them, with a 400 that says so; and the worker's dialer refuses
// to connect to one even when the api let it through.
func TestPrivateURLsRefused(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{
		API: func(o *api.Options) { o.WebhookAllowPrivate = false },
	})
	_, token := sys.NewAccount(t, "pro")
	for _, url := range []string{
		"https://10.0.0.1/hooks",
		"https://169.254.169.254/latest/meta-data",
		"https://127.0.0.1/hooks",
		"https://localhost/hooks",
		"https://[::1]/hooks",
		"https://192.168.1.20:8443/hooks",
	} {
		r := sys.Do(t, http.MethodPost, "/api/v1/webhooks", token, map[string]any{"url": url, "events": []string{"operation.succeeded"}})
		if r.Status != http.StatusBadRequest || r.Code(t) != "invalid_request" || !strings.Contains(string(r.Body), "public address") {
			t.Errorf("%s: %d %s, want 400 naming a non-public address", url, r.Status, r.Body)
		}
	}
	for _, url := range []string{"http://93.184.215.14/hooks", "https://user:pw@93.184.215.14/", "ftp://93.184.215.14/", "not a url", ""} {
		r := sys.Do(t, http.MethodPost, "/api/v1/webhooks", token, map[string]any{"url": url, "events": []string{"operation.succeeded"}})
		if r.Status != http.StatusBadRequest || r.Code(t) != "invalid_request" || !strings.Contains(string(r.Body), "url") {
			t.Errorf("%q: %d %s, want 400 about the url", url, r.Status, r.Body)
		}
	}
	ep := createEndpoint(t, sys, token, "https://93.184.215.14/hooks", "operation.succeeded")
	r := sys.Do(t, http.MethodPatch, "/api/v1/webhooks/"+ep.ID, token, map[string]any{"url": "https://169.254.169.254/"})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "public address") {
		t.Fatalf("PATCH to a metadata URL: %d %s", r.Status, r.Body)
	}

	// The dialer: an api that allows private URLs, a worker that does not.
	sys2 := Start(t, Options{Worker: func(o *worker.Options) {
		o.Webhooks.AllowPrivate = false
		o.Webhooks.Schedule = []time.Duration{10 * time.Millisecond}
	}})
	_, token2 := sys2.NewAccount(t, "pro")
	rc := newReceiver(t, nil)
	ep2 := createEndpoint(t, sys2, token2, rc.srv.URL, "webhook.test")
	d := waitDelivery(t, sys2, token2, ep2.ID, sendTest(t, sys2, token2, ep2.ID).ID)
	if d.Status != "failed" || len(d.AttemptLog) != 2 || d.AttemptLog[0].Error == nil || !strings.Contains(*d.AttemptLog[0].Error, "private") {
		t.Fatalf("delivery to loopback: %+v", d)
	}
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
}

// TestHungReceiverDelaysNothing: a receiver that never answers holds a few
// delivery slots, no more; lifecycle operations and deliveries to other
// endpoints go on while its requests are still hanging.
func TestHungReceiverDelaysNothing(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: func(o *worker.Options) { o.Webhooks.Grace = 100 * time.Millisecond }})
	_, token := sys.NewAccount(t, "pro")

	release := make(chan struct{})
	var mu sync.Mutex
	var hanging, maxHanging, returned int
	hung := newReceiver(t, func(n int, w http.ResponseWriter) {
		mu.Lock()
		hanging++
		maxHanging = max(maxHanging, hanging)
		mu.Unlock()
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
		mu.Lock()
		hanging--
		returned++
		mu.Unlock()
	})
	t.Cleanup(func() { close(release) }) // runs before the receiver closes
	healthy := newReceiver(t, nil)
	hungEp := createEndpoint(t, sys, token, hung.srv.URL, "webhook.test", "operation.succeeded")
	createEndpoint(t, sys, token, healthy.srv.URL, "operation.succeeded")

	for range worker.DefaultWebhookPerEndpoint + 5 {
		sendTest(t, sys, token, hungEp.ID)
	}
	testenv.Eventually(t, "the hung receiver to hold requests", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return hanging >= worker.DefaultWebhookPerEndpoint
	})

	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "not-delayed"})
	sys.WaitOperation(t, token, create.ID)
	healthy.first(t, "the healthy receiver's operation.succeeded", func(ev webhook.Event) bool {
		var op Operation
		return ev.Type == "operation.succeeded" && json.Unmarshal(ev.Data, &op) == nil && op.ID == create.ID
	})
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/stop", token, nil)
	if op := sys.WaitOperation(t, token, stop.ID); op.Status != "succeeded" {
		t.Fatalf("stop %+v", op)
	}
	healthy.first(t, "the stop's operation.succeeded", func(ev webhook.Event) bool {
		var op Operation
		return ev.Type == "operation.succeeded" && json.Unmarshal(ev.Data, &op) == nil && op.ID == stop.ID
	})

	mu.Lock()
	defer mu.Unlock()
	if returned != 0 {
		t.Fatalf("%d hung requests returned before the other work finished; the test proves nothing", returned)
	}
	if maxHanging > worker.DefaultWebhookPerEndpoint {
		t.Fatalf("%d requests hung at once on one endpoint, want at most %d", maxHanging, worker.DefaultWebhookPerEndpoint)
	}
	var recorded int
	if err := sys.Store.DB.Get(&recorded, `SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
		WHERE d.endpoint_id = $1`, hungEp.ID); err != nil || recorded != 0 {
		t.Fatalf("%d attempts to the hung endpoint recorded (%v), want none yet", recorded, err)
	}
}

// TestWebhooksIsolatedBetweenAccounts: account B gets the 404 of an unknown
// id for every route on account A's endpoint, and changes nothing.
func TestWebhooksIsolatedBetweenAccounts(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, tokenA := sys.NewAccount(t, "pro")
	_, tokenB := sys.NewAccount(t, "pro")
	rc := newReceiver(t, nil)
	ep := createEndpoint(t, sys, tokenA, rc.srv.URL, "webhook.test", "operation.succeeded")
	sendTest(t, sys, tokenA, ep.ID)
	unknown := id.New(id.Webhook)

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPatch, "/api/v1/webhooks/%s", map[string]any{"enabled": false}},
		{http.MethodDelete, "/api/v1/webhooks/%s", nil},
		{http.MethodPost, "/api/v1/webhooks/%s/test", nil},
		{http.MethodGet, "/api/v1/webhooks/%s/deliveries", nil},
	} {
		r := sys.Do(t, c.method, fmt.Sprintf(c.path, ep.ID), tokenB, c.body)
		u := sys.Do(t, c.method, fmt.Sprintf(c.path, unknown), tokenB, c.body)
		if r.Status != http.StatusNotFound || u.Status != r.Status || string(u.Body) != string(r.Body) {
			t.Fatalf("B %s %s: %d %s; unknown id: %d %s", c.method, c.path, r.Status, r.Body, u.Status, u.Body)
		}
	}
	var list []endpoint
	sys.Do(t, http.MethodGet, "/api/v1/webhooks", tokenB, nil).JSON(t, &list)
	if len(list) != 0 {
		t.Fatalf("B lists %+v", list)
	}
	sys.Do(t, http.MethodGet, "/api/v1/webhooks", tokenA, nil).JSON(t, &list)
	if len(list) != 1 || !list[0].Enabled {
		t.Fatalf("A's endpoints after B's calls: %+v", list)
	}
	// B's events never reach A's endpoint.
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", tokenB, map[string]string{"subdomain": "b-only"})
	sys.WaitOperation(t, tokenB, op.ID)
	for _, d := range deliveries(t, sys, tokenA, ep.ID) {
		if d.EventType != "webhook.test" {
			t.Fatalf("A's endpoint got B's %s", d.EventType)
		}
	}
}

// TestWebhookScopes: webhooks:read lists endpoints and deliveries only;
// webhooks:write changes them only.
func TestWebhookScopes(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	acct, full := sys.NewAccount(t, "pro")
	ep := createEndpoint(t, sys, full, "https://93.184.215.14/hooks", "operation.succeeded")
	reader := sys.NewKey(t, acct, apikey.WebhooksRead)
	writer := sys.NewKey(t, acct, apikey.WebhooksWrite)
	readOnly := sys.NewKey(t, acct, apikey.PresetReadOnly)

	reads := [][2]string{{http.MethodGet, "/api/v1/webhooks"}, {http.MethodGet, "/api/v1/webhooks/" + ep.ID + "/deliveries"}}
	writes := [][2]string{
		{http.MethodPost, "/api/v1/webhooks"}, {http.MethodPatch, "/api/v1/webhooks/" + ep.ID},
		{http.MethodPost, "/api/v1/webhooks/" + ep.ID + "/test"}, {http.MethodDelete, "/api/v1/webhooks/" + ep.ID},
	}
	for _, tok := range []string{reader, readOnly} {
		for _, rt := range reads {
			if r := sys.Do(t, rt[0], rt[1], tok, nil); r.Status != http.StatusOK {
				t.Fatalf("reader %s %s: %d %s", rt[0], rt[1], r.Status, r.Body)
			}
		}
		for _, rt := range writes {
			r := sys.Do(t, rt[0], rt[1], tok, "{}")
			if r.Status != http.StatusForbidden || r.Code(t) != "insufficient_scope" || !strings.Contains(string(r.Body), "webhooks:write") {
				t.Fatalf("reader %s %s: %d %s", rt[0], rt[1], r.Status, r.Body)
			}
		}
	}
	for _, rt := range reads {
		r := sys.Do(t, rt[0], rt[1], writer, nil)
		if r.Status != http.StatusForbidden || r.Code(t) != "insufficient_scope" || !strings.Contains(string(r.Body), "webhooks:read") {
			t.Fatalf("writer %s %s: %d %s", rt[0], rt[1], r.Status, r.Body)
		}
	}
	createEndpoint(t, sys, writer, "https://93.184.215.14/other", "operation.failed")
	if r := sys.Do(t, http.MethodPatch, "/api/v1/webhooks/"+ep.ID, writer, map[string]any{"events": []string{"operation.failed"}}); r.Status != http.StatusOK {
		t.Fatalf("writer PATCH: %d %s", r.Status, r.Body)
	}
	if r := sys.Do(t, http.MethodDelete, "/api/v1/webhooks/"+ep.ID, writer, nil); r.Status != http.StatusNoContent {
		t.Fatalf("writer DELETE: %d %s", r.Status, r.Body)
	}
}

// TestWebhookEndpointsAPI: create, list, update, delete, validation, the
// sealed secret, the per-account limit under concurrent creates, and
// delivery paging.
func TestWebhookEndpointsAPI(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	const url = "https://93.184.215.14/hooks"
	var ep endpoint

	step(t, "create", func(t *testing.T) {
		r := sys.Do(t, http.MethodPost, "/api/v1/webhooks", token, map[string]any{"url": url, "events": []string{"operation.failed", "operation.failed", "instance.status_changed"}})
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		r.JSON(t, &ep)
		if r.Header.Get("Location") != "/api/v1/webhooks/"+ep.ID || strings.Join(ep.Events, ",") != "operation.failed,instance.status_changed" {
			t.Fatalf("create answered %s, Location %q", r.Body, r.Header.Get("Location"))
		}
	})

	step(t, "the secret is shown once and stored sealed", func(t *testing.T) {
		// The secret is shown once, and stored sealed, not in clear.
		list := sys.Do(t, http.MethodGet, "/api/v1/webhooks", token, nil)
		if list.Status != http.StatusOK || !strings.HasPrefix(string(list.Body), "[") || strings.Contains(string(list.Body), "secret") {
			t.Fatalf("list: %d %s", list.Status, list.Body)
		}
		var sealed []byte
		if err := sys.Store.DB.Get(&sealed, `SELECT secret_sealed FROM webhook_endpoints WHERE id = $1`, ep.ID); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(sealed), strings.TrimPrefix(ep.Secret, webhook.SecretPrefix)) {
			t.Fatal("the secret is stored in clear")
		}
		if opened, err := sys.SecretBox.Open(sealed); err != nil || opened != ep.Secret {
			t.Fatalf("the sealed secret opens to %q (%v)", opened, err)
		}
	})

	step(t, "bad input is refused", func(t *testing.T) {
		for _, c := range []struct {
			name string
			body any
			want string
		}{
			{"no events", map[string]any{"url": url, "events": []string{}}, "events"},
			{"unknown event", map[string]any{"url": url, "events": []string{"instance.exploded"}}, "instance.exploded"},
			{"no url", map[string]any{"events": []string{"operation.failed"}}, "url"},
			{"unknown field", map[string]any{"url": url, "events": []string{"operation.failed"}, "secret": "x"}, "secret"},
			{"long url", map[string]any{"url": url + "/" + strings.Repeat("a", 2100), "events": []string{"operation.failed"}}, "url"},
		} {
			r := sys.Do(t, http.MethodPost, "/api/v1/webhooks", token, c.body)
			if r.Status != http.StatusBadRequest || r.Code(t) != "invalid_request" || !strings.Contains(string(r.Body), c.want) {
				t.Errorf("%s: %d %s", c.name, r.Status, r.Body)
			}
		}
		for _, body := range []any{map[string]any{}, map[string]any{"events": []string{}}, map[string]any{"enabled": "yes"}} {
			if r := sys.Do(t, http.MethodPatch, "/api/v1/webhooks/"+ep.ID, token, body); r.Status != http.StatusBadRequest {
				t.Errorf("PATCH %v: %d %s", body, r.Status, r.Body)
			}
		}
	})

	step(t, "patch", func(t *testing.T) {
		r := sys.Do(t, http.MethodPatch, "/api/v1/webhooks/"+ep.ID, token, map[string]any{"enabled": false, "url": url + "/v2"})
		var upd endpoint
		r.JSON(t, &upd)
		if r.Status != http.StatusOK || upd.Enabled || upd.URL != url+"/v2" || upd.DisabledReason == nil ||
			*upd.DisabledReason != api.DisabledByAPI || strings.Join(upd.Events, ",") != "operation.failed,instance.status_changed" {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
	})

	step(t, "deliveries page newest first", func(t *testing.T) {
		// Deliveries page newest first, by cursor, and a cursor of another
		// list is refused.
		sys.Do(t, http.MethodPatch, "/api/v1/webhooks/"+ep.ID, token, map[string]any{"enabled": true})
		sys.StopWorker() // the deliveries stay pending: paging is about the api
		var ids []string
		for range 5 {
			ids = append(ids, sendTest(t, sys, token, ep.ID).ID)
		}
		var seen []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}
			r := sys.Do(t, http.MethodGet, "/api/v1/webhooks/"+ep.ID+"/deliveries?limit=2"+cursor, token, nil)
			var page struct {
				Data       []delivery `json:"data"`
				NextCursor *string    `json:"next_cursor"`
			}
			r.JSON(t, &page)
			for _, d := range page.Data {
				seen = append(seen, d.ID)
			}
			if page.NextCursor == nil {
				break
			}
			cursor = "&cursor=" + *page.NextCursor
		}
		if len(seen) != 5 || seen[0] != ids[4] || seen[4] != ids[0] {
			t.Fatalf("paged %v, sent %v", seen, ids)
		}
		other := createEndpoint(t, sys, token, url+"/other", "operation.failed")
		if r := sys.Do(t, http.MethodGet, "/api/v1/webhooks/"+other.ID+"/deliveries?limit=2"+cursor, token, nil); r.Status != http.StatusBadRequest || r.Code(t) != "invalid_cursor" {
			t.Fatalf("foreign cursor: %d %s", r.Status, r.Body)
		}
		if r := sys.Do(t, http.MethodGet, "/api/v1/webhooks/"+ep.ID+"/deliveries?status=lost", token, nil); r.Status != http.StatusBadRequest {
			t.Fatalf("bad status filter: %d %s", r.Status, r.Body)
		}
		if got := sys.Do(t, http.MethodGet, "/api/v1/webhooks/"+ep.ID+"/deliveries?status=succeeded", token, nil); !strings.Contains(string(got.Body), `"data":[]`) {
			t.Fatalf("succeeded deliveries: %s", got.Body)
		}
	})

	step(t, "delete", func(t *testing.T) {
		if r := sys.Do(t, http.MethodDelete, "/api/v1/webhooks/"+ep.ID, token, nil); r.Status != http.StatusNoContent || len(r.Body) != 0 {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		for _, m := range [][2]string{{http.MethodDelete, ""}, {http.MethodGet, "/deliveries"}, {http.MethodPost, "/test"}} {
			if r := sys.Do(t, m[0], "/api/v1/webhooks/"+ep.ID+m[1], token, nil); r.Status != http.StatusNotFound {
				t.Fatalf("%s after delete: %d %s", m, r.Status, r.Body)
			}
		}
	})

	step(t, "the limit holds under concurrent creates", func(t *testing.T) {
		// The limit holds under concurrent creates: 1 exists, 25 race for 19.
		var wg sync.WaitGroup
		codes := make(chan int, 25)
		for i := range 25 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := map[string]any{"url": fmt.Sprintf("%s/%d", url, i), "events": []string{"operation.failed"}}
				r := sys.Do(t, http.MethodPost, "/api/v1/webhooks", token, body)
				// A loaded test machine can make the rate limiter's Redis call
				// time out; it fails closed with a 503 that a client retries.
				for tries := 0; r.Status == http.StatusServiceUnavailable && tries < 20; tries++ {
					t.Logf("concurrent create: %d %s; retrying", r.Status, r.Body)
					time.Sleep(100 * time.Millisecond)
					r = sys.Do(t, http.MethodPost, "/api/v1/webhooks", token, body)
				}
				if r.Status == http.StatusForbidden && r.Code(t) != "webhook_limit_reached" {
					t.Errorf("over the limit: %s", r.Body)
				}
				codes <- r.Status
			}()
		}
		wg.Wait()
		close(codes)
		created := 0
		for c := range codes {
			if c == http.StatusCreated {
				created++
			} else if c != http.StatusForbidden {
				t.Errorf("concurrent create answered %d", c)
			}
		}
		var all []endpoint
		sys.Do(t, http.MethodGet, "/api/v1/webhooks", token, nil).JSON(t, &all)
		if created != api.MaxWebhookEndpoints-1 || len(all) != api.MaxWebhookEndpoints {
			t.Fatalf("%d created concurrently, %d endpoints, want %d in all", created, len(all), api.MaxWebhookEndpoints)
		}
	})
}

// TestRelayRepairsLostDeliveries: every gap a crash or a lost Redis can
// leave is repaired by the relay — a delivery committed without its task,
// a retry recorded whose next task was never queued, an attempt whose
// worker died mid-request, a task Asynq archived.
func TestRelayRepairsLostDeliveries(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: func(o *worker.Options) { o.Webhooks.Grace = 50 * time.Millisecond }})
	accountID, token := sys.NewAccount(t, "pro")
	rc := newReceiver(t, nil)
	ep := createEndpoint(t, sys, token, rc.srv.URL, "operation.succeeded")
	sys.StopWorker()
	ctx := context.Background()
	db := sys.Store.DB

	queue := func(name string) string {
		t.Helper()
		body, _ := json.Marshal(webhook.Event{Type: "operation.succeeded", Timestamp: time.Now().UTC(), Data: json.RawMessage(`{"case":"` + name + `"}`)})
		ids, err := store.QueueWebhookEvent(ctx, db, accountID, id.New(id.Event), "operation.succeeded", body)
		if err != nil || len(ids) != 1 {
			t.Fatalf("queue %s: %v %v", name, ids, err)
		}
		return ids[0]
	}
	// Committed, never enqueued.
	lost := queue("lost")
	// Attempt 1 recorded as a 500 and its retry due, the retry's task never
	// enqueued.
	unqueued := queue("unqueued")
	code := 500
	if err := store.ClaimWebhookAttempt(ctx, db, unqueued, 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordWebhookAttempt(ctx, db, unqueued, store.AttemptOutcome{Attempt: 1, StatusCode: &code, Status: store.DeliveryPending, NextAttemptAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Attempt 1 claimed by a worker that died before recording it; its
	// lease has run out.
	died := queue("died")
	if err := store.ClaimWebhookAttempt(ctx, db, died, 0, -time.Second); err != nil {
		t.Fatal(err)
	}
	// The first attempt's task archived by Asynq (its retries used up by
	// a Postgres outage, say), its id still taken.
	archived := queue("archived")
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer client.Close()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer insp.Close()
	task, opts := jobs.NewDeliveryTask(archived, 0, time.Now().Add(time.Hour))
	if _, err := client.Enqueue(task, opts...); err != nil {
		t.Fatal(err)
	}
	if err := insp.ArchiveTask(jobs.QueueWebhooks, jobs.DeliveryTaskID(archived, 0)); err != nil {
		t.Fatal(err)
	}

	sys.StartWorker()
	for name, want := range map[string]struct {
		id       string
		attempts int
	}{"lost": {lost, 1}, "unqueued": {unqueued, 2}, "died": {died, 2}, "archived": {archived, 1}} {
		d := waitDelivery(t, sys, token, ep.ID, want.id)
		if d.Status != "succeeded" || d.Attempts != want.attempts || len(d.AttemptLog) != want.attempts {
			t.Fatalf("%s: delivery %+v", name, d)
		}
		if name == "died" && (d.AttemptLog[0].Error == nil || !strings.Contains(*d.AttemptLog[0].Error, "worker stopped")) {
			t.Fatalf("died: attempt 1 %+v", d.AttemptLog[0])
		}
	}
	got := map[string]int{}
	for _, r := range rc.requests() {
		got[r.Header.Get("webhook-id")]++
	}
	for _, d := range []string{lost, unqueued, died, archived} {
		if got[d] != 1 {
			t.Fatalf("receiver got %s %d times: %v", d, got[d], got)
		}
	}
}

// BenchmarkWebhookDelivery measures the worker's delivery path: b.N events,
// each queued as the lifecycle worker queues one (an outbox row, then its
// first task), delivered to one healthy receiver on loopback. "stream"
// queues them while the worker runs and reports the latency from enqueue
// to arrival; "backlog" queues them with the worker stopped and reports how
// fast a starting worker drains them. Run with
//
//	go test -run '^$' -bench WebhookDelivery -benchtime 2000x ./e2e/
func BenchmarkWebhookDelivery(b *testing.B) {
	for _, mode := range []string{"stream", "backlog"} {
		b.Run(mode, func(b *testing.B) { benchmarkDelivery(b, mode == "backlog") })
	}
}

func benchmarkDelivery(b *testing.B, backlog bool) {
	sys := Start(b, Options{})
	accountID, token := sys.NewAccount(b, "business")
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	all := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		if _, dup := arrived[r.Header.Get("webhook-id")]; !dup {
			arrived[r.Header.Get("webhook-id")] = time.Now()
			if len(arrived) == b.N {
				close(all)
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	createEndpoint(b, sys, token, srv.URL, "operation.succeeded")
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer client.Close()
	ctx := context.Background()
	body := []byte(`{"type":"operation.succeeded","timestamp":"2026-11-22T00:00:00Z","data":{}}`)
	queued := make(map[string]time.Time, b.N)
	produce := func() {
		for range b.N {
			ids, err := store.QueueWebhookEvent(ctx, sys.Store.DB, accountID, id.New(id.Event), "operation.succeeded", body)
			if err != nil || len(ids) != 1 {
				b.Fatalf("queue: %v %v", ids, err)
			}
			queued[ids[0]] = time.Now()
			task, opts := jobs.NewDeliveryTask(ids[0], 0, time.Now())
			if _, err := client.Enqueue(task, opts...); err != nil {
				b.Fatal(err)
			}
		}
	}

	var start time.Time
	if backlog {
		sys.StopWorker()
		produce()
		b.ResetTimer()
		start = time.Now()
		sys.StartWorker()
	} else {
		b.ResetTimer()
		start = time.Now()
		produce()
	}
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatal("not every delivery arrived")
	}
	elapsed := time.Since(start)
	b.StopTimer()

	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	if backlog {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	lat := make([]time.Duration, 0, b.N)
	for d, at := range queued {
		lat = append(lat, arrived[d].Sub(at))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
