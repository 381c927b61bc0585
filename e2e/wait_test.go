package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/webhook"
)

// replica is a second api process's worth of api on the System's database
// and Redis: its own connection pool and its own Postgres listener.
type replica struct {
	URL string
	Hub *notify.Hub
}

func startReplica(t *testing.T, sys *System) *replica {
	t.Helper()
	st, err := store.Open(context.Background(), sys.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	hub := notify.New(sys.DatabaseURL, api.NotifyChannels, nil)
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { _ = hub.Run(ctx); close(hubDone) }()
	rc := sys.Redis.Client()
	srv := api.New(api.Options{
		Store: st, Redis: rc,
		Limiter:        ratelimit.New(rc, ratelimit.Options{Prefix: "e2e:rl:", Timeout: 5 * time.Second}),
		Pepper:         Pepper,
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
		AllowPlainHTTP: true,
		SecretBox:      sys.SecretBox,
		Notifier:       hub,
	})
	hs := httptest.NewServer(srv.Handler())
	runDone := make(chan struct{})
	go func() { srv.Run(ctx); close(runDone) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
		<-hubDone
		hs.Close()
		st.Close()
	})
	return &replica{URL: hs.URL, Hub: hub}
}

// waitResult is the answer of a wait made in a goroutine.
type waitResult struct {
	base string
	op   Operation
	err  error
}

// waitAsync calls GET …/wait at base in a goroutine. Its client gives up
// after 30 s, well short of the 55 s timeout asked for: an answer can only
// come in time if the commit that finished the operation woke the waiter.
func waitAsync(sys *System, base, token, opID string) <-chan waitResult {
	out := make(chan waitResult, 1)
	go func() {
		res := waitResult{base: base}
		defer func() { out <- res }()
		req, err := http.NewRequest(http.MethodGet, base+"/api/v1/operations/"+opID+"/wait?timeout=55", nil)
		if err != nil {
			res.err = err
			return
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			res.err = err
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			res.err = err
			return
		}
		if resp.StatusCode != http.StatusOK {
			res.err = fmt.Errorf("%d %s", resp.StatusCode, body)
			return
		}
		res.err = json.Unmarshal(body, &res.op)
	}()
	return out
}

func getOperation(t *testing.T, sys *System, token, opID string) Operation {
	t.Helper()
	r := sys.Do(t, http.MethodGet, "/api/v1/operations/"+opID, token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET operation %s: %d %s", opID, r.Status, r.Body)
	}
	var op Operation
	r.JSON(t, &op)
	return op
}

// TestWaitAnswersWhenTheOperationFinishesOnEveryReplica: waits on two api
// replicas, each with its own listener, are both answered by the worker's
// commit; neither polls (Notifier set), and their clients would give up
// long before the 55 s timeout.
func TestWaitAnswersWhenTheOperationFinishesOnEveryReplica(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	second := startReplica(t, sys)
	_, token := sys.NewAccount(t, "pro")
	instID := createRunning(t, sys, token, "wait-for-me")

	sys.StopWorker()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/stop", token, nil)
	first := waitAsync(sys, sys.URL, token, op.ID)
	other := waitAsync(sys, second.URL, token, op.ID)
	testenv.Eventually(t, "both waiters subscribed", func() bool {
		return sys.Hub.Stats().Subscribers == 1 && second.Hub.Stats().Subscribers == 1
	})
	if got := getOperation(t, sys, token, op.ID); got.Status != "pending" {
		t.Fatalf("operation %s before the worker runs, want pending", got.Status)
	}
	sys.StartWorker()
	for _, c := range []<-chan waitResult{first, other} {
		res := <-c
		if res.err != nil {
			t.Fatalf("wait at %s: %v", res.base, res.err)
		}
		if res.op.ID != op.ID || res.op.Status != "succeeded" || res.op.FinishedAt == nil {
			t.Fatalf("wait at %s answered %+v", res.base, res.op)
		}
	}
	if n := second.Hub.Stats().Subscribers; n != 0 {
		t.Fatalf("%d subscriptions left on the second replica", n)
	}
	// A terminal operation is answered at once, on either replica.
	if r := sys.DoAt(t, second.URL, http.MethodGet, "/api/v1/operations/"+op.ID+"/wait?timeout=55", token, nil); r.Status != 200 {
		t.Fatalf("wait on a finished operation: %d %s", r.Status, r.Body)
	}
}

func TestWaitAtTimeoutAnswersTheCurrentState(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	_, otherToken := sys.NewAccount(t, "pro")
	sys.StopWorker()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "timeout"})

	r := sys.Do(t, http.MethodGet, "/api/v1/operations/"+op.ID+"/wait?timeout=1", token, nil)
	var got Operation
	r.JSON(t, &got)
	if r.Status != http.StatusOK || got.ID != op.ID || got.Status != "pending" {
		t.Fatalf("wait at timeout: %d %s", r.Status, r.Body)
	}
	t.Run("another account's operation is 404", func(t *testing.T) {
		if r := sys.Do(t, http.MethodGet, "/api/v1/operations/"+op.ID+"/wait?timeout=1", otherToken, nil); r.Status != 404 || r.Code(t) != "not_found" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("invalid timeouts are 400", func(t *testing.T) {
		for _, v := range []string{"0", "56", "1.5", "x", "-1"} {
			if r := sys.Do(t, http.MethodGet, "/api/v1/operations/"+op.ID+"/wait?timeout="+v, token, nil); r.Status != 400 || r.Code(t) != "invalid_request" {
				t.Fatalf("timeout=%s: %d %s", v, r.Status, r.Body)
			}
		}
	})
	t.Run("a read-only key may wait", func(t *testing.T) {
		ro := sys.NewKey(t, getAccountID(t, sys, token), "operations:read")
		if r := sys.Do(t, http.MethodGet, "/api/v1/operations/"+op.ID+"/wait?timeout=1", ro, nil); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
}

func getAccountID(t *testing.T, sys *System, token string) string {
	t.Helper()
	r := sys.Do(t, http.MethodGet, "/api/v1/account", token, nil)
	var a struct{ ID string }
	r.JSON(t, &a)
	return a.ID
}

// TestWaitIsFreedWhenTheClientLeaves: a waiter whose client disconnects
// gives back its subscription (and with it its goroutine) at once, long
// before its timeout.
func TestWaitIsFreedWhenTheClientLeaves(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.StopWorker()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "leaver"})

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.URL+"/api/v1/operations/"+op.ID+"/wait?timeout=55", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	testenv.Eventually(t, "the waiter subscribed", func() bool { return sys.Hub.Stats().Subscribers == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request was answered instead of abandoned")
	}
	testenv.Eventually(t, "the waiter gave back its subscription", func() bool { return sys.Hub.Stats().Subscribers == 0 })
	testenv.Eventually(t, "the abandoned wait logged as 499", func() bool {
		return strings.Contains(sys.Logs(), `"path":"/api/v1/operations/`+op.ID+`/wait","status":499`)
	})
}

// TestCancelPendingOperationBehindASlowOne: a restart queued behind a slow
// stop is cancelled: it makes no Fly call, the instance shows the status
// it had before the restart was accepted, and the start queued after it
// still runs.
func TestCancelPendingOperationBehindASlowOne(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	rc := newReceiver(t, nil)
	createEndpoint(t, sys, token, rc.srv.URL+"/hooks", "operation.cancelled")
	instID := createRunning(t, sys, token, "cancel-behind")

	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines/{id}/stop", DelayMS: 8000})
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/stop", token, nil)
	// The restart is accepted once the worker runs the stop: had the
	// worker begun the stop after it, the instance would show stopping
	// again, truthfully, but not what this test looks at.
	testenv.Eventually(t, "the stop running", func() bool { return getOperation(t, sys, token, stop.ID).Status == "running" })
	restart := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/restart", token, nil)
	if got := getInstance(t, sys, token, instID).Status; got != "restarting" {
		t.Fatalf("instance %s after accepting the restart", got)
	}

	r := sys.Do(t, http.MethodPost, "/api/v1/operations/"+restart.ID+"/cancel", token, nil, "Idempotency-Key", "cancel-1")
	if r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	var cancelled Operation
	r.JSON(t, &cancelled)
	if cancelled.ID != restart.ID || cancelled.Status != "cancelled" || cancelled.StartedAt != nil || cancelled.FinishedAt == nil || cancelled.Error != nil {
		t.Fatalf("cancelled %s", r.Body)
	}
	if got := getOperation(t, sys, token, stop.ID); got.Status == "succeeded" || got.Status == "failed" {
		t.Fatalf("the stop was already %s when the restart was cancelled: not behind a slow one", got.Status)
	}
	if got := getInstance(t, sys, token, instID).Status; got != "stopping" {
		t.Fatalf("instance %s after the cancel, want stopping (as before the restart)", got)
	}
	t.Run("a replay answers the same", func(t *testing.T) {
		again := sys.Do(t, http.MethodPost, "/api/v1/operations/"+restart.ID+"/cancel", token, nil, "Idempotency-Key", "cancel-1")
		if again.Status != 200 || again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(r.Body) {
			t.Fatalf("replay: %d %v %s", again.Status, again.Header, again.Body)
		}
	})
	t.Run("cancelling it again is 409", func(t *testing.T) {
		again := sys.Do(t, http.MethodPost, "/api/v1/operations/"+restart.ID+"/cancel", token, nil)
		if again.Status != 409 || again.Code(t) != "operation_not_cancellable" || !strings.Contains(string(again.Body), "cancelled") {
			t.Fatalf("%d %s", again.Status, again.Body)
		}
	})

	start := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/start", token, nil)
	if got := sys.WaitOperation(t, token, stop.ID); got.Status != "succeeded" {
		t.Fatalf("stop %+v", got)
	}
	if got := sys.WaitOperation(t, token, start.ID); got.Status != "succeeded" {
		t.Fatalf("the start queued after the cancelled restart: %+v", got)
	}
	if got := getOperation(t, sys, token, restart.ID); got.Status != "cancelled" {
		t.Fatalf("restart ended %s", got.Status)
	}
	if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}/restart"); n != 0 {
		t.Fatalf("the cancelled restart made %d Fly restart calls", n)
	}
	if got := getInstance(t, sys, token, instID).Status; got != "running" {
		t.Fatalf("instance %s at the end", got)
	}
	ev := rc.first(t, "operation.cancelled", func(e webhook.Event) bool { return e.Type == "operation.cancelled" })
	var data Operation
	if err := json.Unmarshal(ev.Event.Data, &data); err != nil || data.ID != restart.ID || data.Status != "cancelled" {
		t.Fatalf("operation.cancelled data %s (%v)", ev.Event.Data, err)
	}
}

// TestCancelRefusals: only a pending operation of one's own account can be
// cancelled, and only with instance:write.
func TestCancelRefusals(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	acct, token := sys.NewAccount(t, "pro")
	_, otherToken := sys.NewAccount(t, "pro")
	instID := createRunning(t, sys, token, "no-cancel")

	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines/{id}/stop", DelayMS: 5000})
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/stop", token, nil)
	testenv.Eventually(t, "the stop running", func() bool {
		op, err := store.OperationByID(context.Background(), sys.Store.DB, stop.ID)
		if err != nil {
			t.Fatal(err)
		}
		return op.Status == store.OpRunning
	})
	t.Run("a running operation is 409", func(t *testing.T) {
		r := sys.Do(t, http.MethodPost, "/api/v1/operations/"+stop.ID+"/cancel", token, nil)
		if r.Status != 409 || r.Code(t) != "operation_not_cancellable" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("another account's operation is 404", func(t *testing.T) {
		if r := sys.Do(t, http.MethodPost, "/api/v1/operations/"+stop.ID+"/cancel", otherToken, nil); r.Status != 404 || r.Code(t) != "not_found" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("a read-only key is 403", func(t *testing.T) {
		ro := sys.NewKey(t, acct, "read-only")
		if r := sys.Do(t, http.MethodPost, "/api/v1/operations/"+stop.ID+"/cancel", ro, nil); r.Status != 403 || r.Code(t) != "insufficient_scope" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	if got := sys.WaitOperation(t, token, stop.ID); got.Status != "succeeded" {
		t.Fatalf("the stop that could not be cancelled: %+v", got)
	}
	t.Run("a finished operation is 409", func(t *testing.T) {
		r := sys.Do(t, http.MethodPost, "/api/v1/operations/"+stop.ID+"/cancel", token, nil)
		if r.Status != 409 || r.Code(t) != "operation_not_cancellable" || !strings.Contains(string(r.Body), "succeeded") {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
}

// TestCancelPendingCreateDeletesTheInstance: a create that never ran
// leaves nothing behind: the instance is deleted (quota and subdomain
// free), what was queued behind the create is cancelled, Fly never hears
// of it.
func TestCancelPendingCreateDeletesTheInstance(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.StopWorker()
	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "never-born"})
	start := accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/start", token, nil)

	r := sys.Do(t, http.MethodPost, "/api/v1/operations/"+create.ID+"/cancel", token, nil)
	if r.Status != 200 {
		t.Fatalf("cancel create: %d %s", r.Status, r.Body)
	}
	if got := getOperation(t, sys, token, start.ID); got.Status != "cancelled" {
		t.Fatalf("the start behind the cancelled create: %s", got.Status)
	}
	if r := sys.Do(t, http.MethodGet, "/api/v1/instances/"+create.InstanceID, token, nil); r.Status != 404 {
		t.Fatalf("the instance of a cancelled create: %d %s", r.Status, r.Body)
	}
	again := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "never-born"})
	sys.StartWorker()
	if got := sys.WaitOperation(t, token, again.ID); got.Status != "succeeded" {
		t.Fatalf("a new create on the freed subdomain: %+v", got)
	}
	if m := sys.MachinesOf(create.InstanceID); len(m) != 0 {
		t.Fatalf("the cancelled instance has %d machines", len(m))
	}
	var n int
	if err := sys.Store.DB.Get(&n, `SELECT count(*) FROM events WHERE type = 'operation.cancelled'`); err != nil || n != 2 {
		t.Fatalf("%d operation.cancelled events (%v), want 2", n, err)
	}
}

func TestOperationFilters(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	_, otherToken := sys.NewAccount(t, "pro")
	instID := createRunning(t, sys, token, "filtered")
	other := createRunning(t, sys, otherToken, "not-mine")
	sys.StopWorker()
	var restarts []string
	for i := 0; i < 3; i++ {
		restarts = append(restarts, accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/restart", token, nil).ID)
		accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/stop", token, nil)
	}
	accept(t, sys, http.MethodPost, "/api/v1/instances/"+other+"/restart", otherToken, nil)

	list := func(query string) ([]Operation, *string) {
		t.Helper()
		r := sys.Do(t, http.MethodGet, "/api/v1/operations?"+query, token, nil)
		if r.Status != 200 {
			t.Fatalf("?%s: %d %s", query, r.Status, r.Body)
		}
		var page struct {
			Data       []Operation `json:"data"`
			NextCursor *string     `json:"next_cursor"`
		}
		r.JSON(t, &page)
		return page.Data, page.NextCursor
	}
	t.Run("type and status page together, newest first", func(t *testing.T) {
		var got []string
		q := "type=instance.restart&status=pending&instance_id=" + instID + "&limit=2"
		for cursor := ""; ; {
			ops, next := list(q + cursor)
			for _, o := range ops {
				if o.Type != "instance.restart" || o.Status != "pending" || o.InstanceID != instID {
					t.Fatalf("filtered page holds %+v", o)
				}
				got = append(got, o.ID)
			}
			if next == nil {
				break
			}
			cursor = "&cursor=" + *next
		}
		if len(got) != 3 || got[0] != restarts[2] || got[2] != restarts[0] {
			t.Fatalf("restarts %v, want %v newest first", got, restarts)
		}
	})
	t.Run("created_after and created_before", func(t *testing.T) {
		first := getOperation(t, sys, token, restarts[0])
		last := getOperation(t, sys, token, restarts[2])
		ops, _ := list("type=instance.restart&created_after=" + first.CreatedAt.Format(time.RFC3339Nano) +
			"&created_before=" + last.CreatedAt.Format(time.RFC3339Nano))
		if len(ops) != 2 || ops[0].ID != restarts[1] || ops[1].ID != restarts[0] {
			t.Fatalf("range [first, last) = %+v", ops)
		}
	})
	t.Run("a cursor is bound to its filters", func(t *testing.T) {
		_, next := list("type=instance.restart&limit=1")
		r := sys.Do(t, http.MethodGet, "/api/v1/operations?type=instance.stop&limit=1&cursor="+*next, token, nil)
		if r.Status != 400 || r.Code(t) != "invalid_cursor" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})
	t.Run("invalid values are 400", func(t *testing.T) {
		for _, q := range []string{"type=instance.explode", "status=queued", "created_after=yesterday", "created_before=2026-13-01T00:00:00Z",
			"created_after=2026-02-01T00:00:00Z&created_before=2026-01-01T00:00:00Z", "instance_id=op_123"} {
			if r := sys.Do(t, http.MethodGet, "/api/v1/operations?"+q, token, nil); r.Status != 400 || r.Code(t) != "invalid_request" {
				t.Fatalf("?%s: %d %s", q, r.Status, r.Body)
			}
		}
	})
	t.Run("another account's instance gives an empty page", func(t *testing.T) {
		if ops, _ := list("instance_id=" + other); len(ops) != 0 {
			t.Fatalf("%+v", ops)
		}
	})
}

// TestWaitOneLiner runs the seed clients' one-liner: a shell waits for an
// operation with curl and checks the outcome with jq's exit status.
func TestWaitOneLiner(t *testing.T) {
	t.Parallel()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	if _, err := exec.LookPath("jq"); err != nil {
		t.Skip("jq is not installed")
	}
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.StopWorker()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "one-liner"})
	oneLiner := `curl -sf "$API/api/v1/operations/$OP/wait?timeout=55" -H "Authorization: Bearer $TOKEN" | jq -e '.status == "succeeded"'`
	cmd := exec.Command("sh", "-c", oneLiner)
	cmd.Env = append(os.Environ(), "API="+sys.URL, "OP="+op.ID, "TOKEN="+token, "PATH="+filepath.Dir(curl)+":"+os.Getenv("PATH"))
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the one-liner waiting", func() bool { return sys.Hub.Stats().Subscribers == 1 })
	sys.StartWorker()
	if err := cmd.Wait(); err != nil || strings.TrimSpace(out.String()) != "true" {
		t.Fatalf("one-liner: %v, printed %q", err, out.String())
	}
	// A failed operation makes it exit non-zero.
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines/{id}/stop", Status: 422})
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+op.InstanceID+"/stop", token, nil)
	cmd = exec.Command("sh", "-c", oneLiner)
	cmd.Env = append(os.Environ(), "API="+sys.URL, "OP="+stop.ID, "TOKEN="+token)
	if out, err := cmd.Output(); err == nil || strings.TrimSpace(string(out)) != "false" {
		t.Fatalf("one-liner on a failed operation: %v, printed %q", err, out)
	}
}
