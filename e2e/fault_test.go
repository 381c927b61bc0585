package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/worker"
)

const routeCreateMachine = "/v1/apps/{app}/machines"

// assertOneMachine checks that flysim holds exactly one live machine for
// the instance, in its own app.
func assertOneMachine(t *testing.T, sys *System, instID, state string) {
	t.Helper()
	ms := sys.MachinesOf(instID)
	if len(ms) != 1 || ms[0].State != state {
		t.Fatalf("instance %s has machines %+v, want exactly one %s", instID, ms, state)
	}
	for _, a := range sys.Flysim.Machines() {
		if a.App == worker.AppName(instID) && len(a.Machines) != 1 {
			t.Fatalf("app %s holds %d machines", a.App, len(a.Machines))
		}
	}
}

func TestFlyUnavailableThreeTimesStillSucceeds(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: routeCreateMachine, Status: http.StatusServiceUnavailable, Count: 3})
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "flaky-fly"})
	if done := sys.WaitOperation(t, token, op.ID); done.Status != "succeeded" {
		t.Fatalf("create: %+v", done)
	}
	if n := sys.Flysim.Calls(http.MethodPost, routeCreateMachine); n != 4 {
		t.Fatalf("create machine called %d times, want 3 failures + 1", n)
	}
	assertOneMachine(t, sys, op.InstanceID, "started")

	// A longer outage outlasts the client's own retries: the task is
	// retried by the queue, with backoff, and still succeeds.
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines/{id}/stop", Status: http.StatusBadGateway, Count: 7})
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+op.InstanceID+"/stop", token, nil)
	if done := sys.WaitOperation(t, token, stop.ID); done.Status != "succeeded" {
		t.Fatalf("stop: %+v", done)
	}
	if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}/stop"); n != 8 {
		t.Fatalf("stop called %d times, want 7 failures + 1", n)
	}
	assertOneMachine(t, sys, op.InstanceID, "stopped")
}

func TestFlyRejectionFailsTheOperationOnce(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: routeCreateMachine, Status: http.StatusUnprocessableEntity})
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "bad-config"})
	done := sys.WaitOperation(t, token, op.ID)
	if done.Status != "failed" || done.Error == nil || done.Error.Code != "fly_rejected" ||
		!strings.Contains(done.Error.Message, "422") || !strings.Contains(done.Error.Message, "fly-request-id") {
		t.Fatalf("create: %+v (error %+v)", done, done.Error)
	}
	if inst := getInstance(t, sys, token, op.InstanceID); inst.Status != "failed" {
		t.Fatalf("instance %s after a rejected create", inst.Status)
	}
	// Give a retry storm the chance to show: the relay runs every 200ms.
	time.Sleep(time.Second)
	if n := sys.Flysim.Calls(http.MethodPost, routeCreateMachine); n != 1 {
		t.Fatalf("create machine called %d times after a 422", n)
	}
	// The failed instance holds its app until it is deleted; delete
	// removes it.
	if len(sys.Flysim.Machines()) != 1 {
		t.Fatalf("flysim apps %+v", sys.Flysim.Machines())
	}
	start := accept(t, sys, http.MethodPost, "/api/v1/instances/"+op.InstanceID+"/start", token, nil)
	if d := sys.WaitOperation(t, token, start.ID); d.Status != "failed" || d.Error.Code != "no_machine" {
		t.Fatalf("start without a machine: %+v", d)
	}
	del := accept(t, sys, http.MethodDelete, "/api/v1/instances/"+op.InstanceID, token, nil)
	if d := sys.WaitOperation(t, token, del.ID); d.Status != "succeeded" {
		t.Fatalf("delete: %+v", d)
	}
	if len(sys.Flysim.Machines()) != 0 {
		t.Fatalf("orphaned apps %+v", sys.Flysim.Machines())
	}
}

// TestRedisLostWhileOperationsPending: the queue's contents vanish —
// Redis flushed, or restarted empty — while operations are pending or
// running. Every one still finishes, exactly once, with one machine each.
func TestRedisLostWhileOperationsPending(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{FlysimDelay: 30 * time.Millisecond})
	_, token := sys.NewAccount(t, "business")
	ctx := context.Background()

	createSome := func(prefix string, n int) []Operation {
		var ops []Operation
		for i := range n {
			ops = append(ops, accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": fmt.Sprintf("%s-%d", prefix, i)}))
		}
		return ops
	}
	check := func(ops []Operation) {
		t.Helper()
		for _, op := range ops {
			if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
				t.Fatalf("%s: %+v", op.ID, d)
			}
			assertOneMachine(t, sys, op.InstanceID, "started")
		}
	}

	// Flushed while nobody works: the tasks are gone before any ran.
	sys.StopWorker()
	flushed := createSome("flushed", 3)
	if err := sys.Redis.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	sys.StartWorker()
	check(flushed)

	// Flushed while the worker runs them: the relay queues them again and
	// the instance lock keeps the second delivery from running alongside.
	running := createSome("running", 3)
	// Started, not necessarily still running: a worker woken by the
	// commit may have finished it before this loop looked.
	testenv.Eventually(t, "an operation started", func() bool {
		return operationRow(t, sys, running[0].ID).Status != "pending"
	})
	if err := sys.Redis.Client().FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	check(running)

	// Restarted empty with operations pending.
	sys.StopWorker()
	restarted := createSome("restarted", 3)
	sys.Redis.Stop()
	sys.Redis.Start()
	sys.StartWorker()
	check(restarted)
	if n := sys.Flysim.Calls(http.MethodPost, routeCreateMachine); n != 9 {
		t.Fatalf("create machine called %d times for 9 instances", n)
	}
}

// TestWorkerKilledMidCreate runs the worker as a real process, kills it
// with SIGKILL while a create is under way, and starts another: the create
// still succeeds, with exactly one machine.
func TestWorkerKilledMidCreate(t *testing.T) {
	t.Parallel()
	bin := buildMocd(t)
	// 1s per machine transition: a create spends about two seconds
	// waiting for its machine, where the kill lands.
	sys := Start(t, Options{FlysimDelay: time.Second})
	sys.StopWorker()
	_, token := sys.NewAccount(t, "pro")

	first := startWorkerProcess(t, sys, bin)
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "killed-claw"})
	testenv.Eventually(t, "the machine being created", func() bool { return len(sys.MachinesOf(op.InstanceID)) == 1 })
	if got := operationRow(t, sys, op.ID); got.Status != "running" {
		t.Fatalf("operation %s when the worker is killed", got.Status)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait() // "signal: killed", as it should
	// A create woken by its commit runs before asynq hands its task out:
	// the dead worker may have left the task active (its handler waited for
	// the woken run), which only the relay's rescue frees in time, or still
	// queued, which the next worker simply takes.
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer insp.Close()
	task, err := insp.GetTaskInfo(jobs.QueueLifecycle, op.ID)
	if err != nil {
		t.Fatal(err)
	}

	killedAt := time.Now()
	second := startWorkerProcess(t, sys, bin)
	done := sys.WaitOperation(t, token, op.ID)
	if done.Status != "succeeded" {
		t.Fatalf("create after the kill: %+v", done)
	}
	t.Logf("create finished %s after the kill", time.Since(killedAt).Round(100*time.Millisecond))
	assertOneMachine(t, sys, op.InstanceID, "started")
	if n := sys.Flysim.Calls(http.MethodPost, routeCreateMachine); n != 1 {
		t.Fatalf("create machine called %d times", n)
	}
	if inst := getInstance(t, sys, token, op.InstanceID); inst.Status != "running" {
		t.Fatalf("instance %s", inst.Status)
	}
	if got := operationRow(t, sys, op.ID); got.Attempts != 2 {
		t.Fatalf("operation ran %d times", got.Attempts)
	}
	// A task left active was freed by the relay's rescue, not by asynq's
	// lease recovery (a minute or two later).
	if task.State == asynq.TaskStateActive && !strings.Contains(second.Output(), "rescued an operation whose worker died") {
		t.Fatalf("the second worker did not rescue the operation whose task the dead worker held:\n%s", second.Output())
	}
	t.Logf("the task was %s when the worker died", task.State)
}

func TestReconcilerRepairsDrift(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "drifty"})
	sys.WaitOperation(t, token, op.ID)
	m := sys.MachinesOf(op.InstanceID)[0]
	if err := sys.Flysim.SetState(worker.AppName(op.InstanceID), m.ID, "stopped"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the reconciler to see the stopped machine", func() bool {
		return getInstance(t, sys, token, op.InstanceID).Status == "stopped"
	})
	var evs struct {
		Data []struct {
			OperationID *string `json:"operation_id"`
			FromStatus  *string `json:"from_status"`
			ToStatus    string  `json:"to_status"`
		} `json:"data"`
	}
	sys.Do(t, http.MethodGet, "/api/v1/instances/"+op.InstanceID+"/events?limit=1", token, nil).JSON(t, &evs)
	if len(evs.Data) != 1 || evs.Data[0].OperationID != nil || *evs.Data[0].FromStatus != "running" || evs.Data[0].ToStatus != "stopped" {
		t.Fatalf("drift event %+v", evs.Data)
	}
	// The user starts it again as usual.
	start := accept(t, sys, http.MethodPost, "/api/v1/instances/"+op.InstanceID+"/start", token, nil)
	if d := sys.WaitOperation(t, token, start.ID); d.Status != "succeeded" {
		t.Fatalf("start: %+v", d)
	}
	assertOneMachine(t, sys, op.InstanceID, "started")
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// buildMocd builds the mocd binary once per test run.
func buildMocd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "mocd-e2e-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "mocd"), "github.com/myopenclaw/mocd/cmd/mocd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "mocd")
}

// workerProcess is a `mocd worker` process.
type workerProcess struct {
	*exec.Cmd
	out *testenv.Buffer
}

// Output is what the process logged so far.
func (p *workerProcess) Output() string { return p.out.String() }

// listening waits for the process to log the address its /metrics listens
// on (MOC_METRICS_LISTEN=127.0.0.1:0 picks a free port) and answers it.
func (p *workerProcess) listening(t *testing.T) string {
	t.Helper()
	var addr string
	testenv.Eventually(t, "mocd worker to listen", func() bool {
		for _, line := range strings.Split(p.Output(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" && l.Addr != "" {
				addr = l.Addr
				return true
			}
		}
		return false
	})
	return addr
}

// startWorkerProcess runs `mocd worker` against the System, killed at the
// end of the test if it still runs; its output goes to the test log when
// the test fails.
func startWorkerProcess(t *testing.T, sys *System, bin string, env ...string) *workerProcess {
	t.Helper()
	cmd, out := startProcess(t, sys, bin, "worker", append([]string{
		"FLY_API_BASE_URL=" + sys.FlysimURL,
		"FLY_API_TOKEN=e2e",
		"MOC_INSTANCE_IMAGE=" + Image,
		"MOC_METRICS_LISTEN=127.0.0.1:0",
	}, env...)...)
	return &workerProcess{Cmd: cmd, out: out}
}

// startProcess runs `mocd <command>` on the System's Postgres and Redis
// with its pepper and secret key, then env (KEY=value entries; the last of
// a duplicated key wins, as os/exec does). The process is killed at the
// end of the test, and its output goes to the test log if the test failed.
func startProcess(t *testing.T, sys *System, bin, command string, env ...string) (*exec.Cmd, *testenv.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, command)
	cmd.Env = append(append(os.Environ(),
		"DATABASE_URL="+sys.DatabaseURL,
		"REDIS_URL="+sys.Redis.URL(),
		"MOC_PEPPER="+string(Pepper),
		"MOC_SECRET_KEY="+SecretKey,
	), env...)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mocd %s pid %d output:\n%s", command, cmd.Process.Pid, out.String())
		}
	})
	return cmd, out
}

// operationRow reads an operation from Postgres; a failed read fails the
// test, so it can never pass as the zero operation.
func operationRow(t *testing.T, sys *System, opID string) store.Operation {
	t.Helper()
	op, err := store.OperationByID(context.Background(), sys.Store.DB, opID)
	if err != nil {
		t.Fatalf("read operation %s: %v", opID, err)
	}
	return op
}
