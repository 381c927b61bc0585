package e2e

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/testenv"
)

// createRunning creates an instance and waits until it runs.
func createRunning(t *testing.T, sys *System, token, subdomain string) string {
	t.Helper()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]any{"subdomain": subdomain, "fly_region": "iad"})
	if got := sys.WaitOperation(t, token, op.ID); got.Status != "succeeded" {
		t.Fatalf("create %s: %+v", subdomain, got)
	}
	return op.InstanceID
}

func countOps(t *testing.T, sys *System, instID, typ string) int {
	t.Helper()
	var n int
	if err := sys.Store.DB.GetContext(context.Background(), &n,
		`SELECT count(*) FROM operations WHERE instance_id = $1 AND type = $2`, instID, typ); err != nil {
		t.Fatal(err)
	}
	return n
}

const restartRoute = "/v1/apps/{app}/machines/{id}/restart"

// TestGitHubActionsRetry: a CI step sends its restart twice with the same
// Idempotency-Key (the commit sha): one operation, one restart of the
// machine, and the retry gets the first answer byte for byte.
func TestGitHubActionsRetry(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, tok := sys.NewAccount(t, "pro")
	inst := createRunning(t, sys, tok, "gha-retry")
	sys.Flysim.ResetCalls()

	path := "/api/v1/instances/" + inst + "/restart"
	first := sys.Do(t, http.MethodPost, path, tok, nil, "Idempotency-Key", "3f2a9c1e8b7d")
	var op Operation
	first.JSON(t, &op)
	sys.WaitOperation(t, tok, op.ID)
	second := sys.Do(t, http.MethodPost, path, tok, nil, "Idempotency-Key", "3f2a9c1e8b7d")

	if first.Status != 202 || second.Status != 202 || !bytes.Equal(first.Body, second.Body) {
		t.Fatalf("first %d %s\nsecond %d %s", first.Status, first.Body, second.Status, second.Body)
	}
	if second.Header.Get("Idempotent-Replayed") != "true" || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("Idempotent-Replayed: %q then %q", first.Header.Get("Idempotent-Replayed"), second.Header.Get("Idempotent-Replayed"))
	}
	if second.Header.Get("Location") != "/api/v1/operations/"+op.ID {
		t.Fatalf("replayed Location = %q", second.Header.Get("Location"))
	}
	if n := countOps(t, sys, inst, "instance.restart"); n != 1 {
		t.Fatalf("%d restart operations, want 1", n)
	}
	if n := sys.Flysim.Calls(http.MethodPost, restartRoute); n != 1 {
		t.Fatalf("flysim saw %d restarts, want 1", n)
	}
}

// TestFiftyConcurrentRetries: fifty simultaneous requests with one key make
// one operation; every answer is that operation's 202 or 409 in use.
func TestFiftyConcurrentRetries(t *testing.T) {
	t.Parallel()
	// Fifty requests at once under the race detector on two cores can take
	// longer than the limiter's production timeout to reach Redis; this test
	// is about idempotency, not about failing closed.
	sys := Start(t, Options{API: func(o *api.Options) {
		o.Limiter = ratelimit.New(o.Redis, ratelimit.Options{Prefix: "e2e:rl:", Timeout: 5 * time.Second})
	}})
	_, tok := sys.NewAccount(t, "business")
	inst := createRunning(t, sys, tok, "fifty-retries")
	sys.Flysim.ResetCalls()

	path := "/api/v1/instances/" + inst + "/restart"
	res := make([]*Response, 50)
	var wg sync.WaitGroup
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = sys.Do(t, http.MethodPost, path, tok, nil, "Idempotency-Key", "deploy-1234")
		}()
	}
	wg.Wait()
	var opID string
	for _, r := range res {
		switch r.Status {
		case http.StatusAccepted:
			var op Operation
			r.JSON(t, &op)
			if opID == "" {
				opID = op.ID
			} else if op.ID != opID {
				t.Errorf("two operations: %s and %s", opID, op.ID)
			}
		case http.StatusConflict:
			if r.Code(t) != "idempotency_key_in_use" {
				t.Errorf("409 %s", r.Body)
			}
		default:
			t.Errorf("unexpected %d %s", r.Status, r.Body)
		}
	}
	if opID == "" {
		t.Fatal("no request was accepted")
	}
	sys.WaitOperation(t, tok, opID)
	if n := countOps(t, sys, inst, "instance.restart"); n != 1 {
		t.Fatalf("%d restart operations, want 1", n)
	}
	if n := sys.Flysim.Calls(http.MethodPost, restartRoute); n != 1 {
		t.Fatalf("flysim saw %d restarts, want 1", n)
	}
}

// TestCreateReplayedAfterItFinished: a create retried long after it
// succeeded answers the original 202 (status pending, as it was), not a new
// instance, not a 409 for the subdomain.
func TestCreateReplayedAfterItFinished(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, tok := sys.NewAccount(t, "pro")
	body := map[string]any{"subdomain": "replayed", "fly_region": "lhr"}
	first := sys.Do(t, http.MethodPost, "/api/v1/instances", tok, body, "Idempotency-Key", "create-once")
	var op Operation
	first.JSON(t, &op)
	if done := sys.WaitOperation(t, tok, op.ID); done.Status != "succeeded" {
		t.Fatalf("create: %+v", done)
	}
	again := sys.Do(t, http.MethodPost, "/api/v1/instances", tok, body, "Idempotency-Key", "create-once")
	if again.Status != 202 || !bytes.Equal(again.Body, first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s", again.Status, again.Body)
	}
	var list []Instance
	sys.Do(t, http.MethodGet, "/api/v1/instances", tok, nil).JSON(t, &list)
	if len(list) != 1 {
		t.Fatalf("%d instances after a replayed create, want 1", len(list))
	}
	// Another body under the same key is a client bug: 422.
	other := sys.Do(t, http.MethodPost, "/api/v1/instances", tok, map[string]any{"subdomain": "other-name"}, "Idempotency-Key", "create-once")
	if other.Status != 422 || other.Code(t) != "idempotency_key_reused" {
		t.Fatalf("mismatched body: %d %s", other.Status, other.Body)
	}
}

// TestSameKeyTwoAccounts: keys are scoped to the account.
func TestSameKeyTwoAccounts(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, a := sys.NewAccount(t, "pro")
	_, b := sys.NewAccount(t, "pro")
	ra := sys.Do(t, http.MethodPost, "/api/v1/instances", a, map[string]any{"subdomain": "acct-a"}, "Idempotency-Key", "same")
	rb := sys.Do(t, http.MethodPost, "/api/v1/instances", b, map[string]any{"subdomain": "acct-b"}, "Idempotency-Key", "same")
	var opA, opB Operation
	ra.JSON(t, &opA)
	rb.JSON(t, &opB)
	if ra.Status != 202 || rb.Status != 202 || opA.ID == opB.ID || rb.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("a: %d %s\nb: %d %s", ra.Status, ra.Body, rb.Status, rb.Body)
	}
	sys.WaitOperation(t, a, opA.ID)
	sys.WaitOperation(t, b, opB.ID)
}

// TestTaskEnqueuedTwiceRunsOnce: the Asynq TaskID is the second line of
// defence; and even a task that slips through (another TaskID, as the
// relay's rescue uses) finds the operation finished and does nothing.
func TestTaskEnqueuedTwiceRunsOnce(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, tok := sys.NewAccount(t, "pro")
	inst := createRunning(t, sys, tok, "enqueued-twice")
	sys.Flysim.ResetCalls()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances/"+inst+"/restart", tok, nil)
	sys.WaitOperation(t, tok, op.ID)

	client := asynq.NewClient(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer client.Close()
	task, opts := jobs.NewRescueTask(op.ID, 99)
	if _, err := client.Enqueue(task, opts...); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer insp.Close()
	testenv.Eventually(t, "the duplicate task to be processed", func() bool {
		info, err := insp.GetTaskInfo(jobs.QueueLifecycle, op.ID+"#rescue99")
		// Processed: kept as completed for jobs.OperationRetention, or gone.
		return err != nil || info.State == asynq.TaskStateCompleted
	})
	if n := sys.Flysim.Calls(http.MethodPost, restartRoute); n != 1 {
		t.Fatalf("flysim saw %d restarts, want 1", n)
	}
}
