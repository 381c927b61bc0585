package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/worker"
)

// TestWakeUpStartsOperationsWithoutPolling: with Asynq polling only every
// 30 seconds (its first poll, at start, finds the queue empty and sleeps
// at least 15s), accepted operations still run, because their commit wakes
// the worker (worker/wake.go); their tasks are still waiting in Redis, the
// proof that the wake-up ran them. Each ran exactly once. (Not longer:
// Asynq's shutdown waits for the poll's sleep to end.)
func TestWakeUpStartsOperationsWithoutPolling(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: func(o *worker.Options) { o.PollInterval = 30 * time.Second }})
	_, token := sys.NewAccount(t, "pro")
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer insp.Close()

	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "woken-claw"})
	ops := []Operation{create}
	if op := sys.WaitOperation(t, token, create.ID); op.Status != "succeeded" {
		t.Fatalf("create finished as %+v", op)
	}
	for _, call := range []string{"stop", "start", "restart"} {
		op := accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/"+call, token, nil)
		if done := sys.WaitOperation(t, token, op.ID); done.Status != "succeeded" {
			t.Fatalf("%s finished as %+v", call, done)
		}
		ops = append(ops, op)
	}
	ranOnceNotByTask(t, sys, insp, ops...)
}

// ranOnceNotByTask checks that each operation ran exactly once and that
// its Asynq task is still waiting: a wake-up or a hand-off ran it.
func ranOnceNotByTask(t *testing.T, sys *System, insp *asynq.Inspector, ops ...Operation) {
	t.Helper()
	for _, op := range ops {
		info, err := insp.GetTaskInfo(jobs.QueueLifecycle, op.ID)
		if err != nil {
			t.Fatalf("task of %s: %v (the api enqueues every operation)", op.ID, err)
		}
		if info.State != asynq.TaskStatePending {
			t.Errorf("task of %s (%s) is %s: Asynq, not a wake-up or a hand-off, ran it", op.ID, op.Type, info.State)
		}
		row, err := store.OperationByID(context.Background(), sys.Store.DB, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if row.Attempts != 1 {
			t.Errorf("operation %s ran %d times", op.ID, row.Attempts)
		}
	}
}

// TestWakeUpRetriesABusyInstance: a wake-up that finds its instance's lock
// held (here by the test; in life by the run before, or the reconciler's
// sweep) tries again shortly, so the operation still runs on its wake-up
// once the lock is free, not on its task at Asynq's next poll (30 s here).
func TestWakeUpRetriesABusyInstance(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: func(o *worker.Options) { o.PollInterval = 30 * time.Second }})
	_, token := sys.NewAccount(t, "pro")
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer insp.Close()
	ctx := context.Background()
	retries := func() float64 {
		fams, err := sys.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		m := Metrics{}
		for _, f := range fams {
			m[f.GetName()] = f
		}
		return m.Value("mocd_worker_wakeup_retries_total")
	}

	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "busy-claw"})
	if op := sys.WaitOperation(t, token, create.ID); op.Status != "succeeded" {
		t.Fatalf("create finished as %+v", op)
	}
	var lock *store.InstanceLock
	testenv.Eventually(t, "the instance's lock (the reconciler's sweep may hold it a moment)", func() bool {
		l, ok, err := sys.Store.TryLockInstance(ctx, create.InstanceID)
		if err != nil {
			t.Fatal(err)
		}
		lock = l
		return ok
	})
	before := retries()
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/stop", token, nil)
	testenv.Eventually(t, "a wake-up finding the instance busy", func() bool { return retries() > before })
	lock.Release()

	if done := sys.WaitOperation(t, token, stop.ID); done.Status != "succeeded" {
		t.Fatalf("stop finished as %+v", done)
	}
	ranOnceNotByTask(t, sys, insp, stop)
}

// TestWakeUpAndTaskRunOnce: with both paths live (the default), a burst
// of calls on one instance runs each operation exactly once, in order,
// whichever path gets to it.
func TestWakeUpAndTaskRunOnce(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "twice-claw"})
	sys.WaitOperation(t, token, create.ID)
	var ops []Operation
	for range 4 {
		for _, call := range []string{"stop", "start", "restart"} {
			ops = append(ops, accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/"+call, token, nil))
		}
	}
	var prev *time.Time
	for _, op := range ops {
		if done := sys.WaitOperation(t, token, op.ID); done.Status != "succeeded" {
			t.Fatalf("%s finished as %+v", op.Type, done)
		}
		row, err := store.OperationByID(context.Background(), sys.Store.DB, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if row.Attempts != 1 {
			t.Errorf("operation %s ran %d times", op.ID, row.Attempts)
		}
		if prev != nil && row.StartedAt.Before(*prev) {
			t.Errorf("operation %s started before the one accepted ahead of it finished", op.ID)
		}
		prev = row.FinishedAt
	}
	if got := getInstance(t, sys, token, create.InstanceID).Status; got != "running" {
		t.Fatalf("instance after the burst: %s", got)
	}
}

// TestRelayDoesNotRequeueFinishedOperations: the relay reads the
// unfinished operations, then enqueues each one's task; an operation that
// finishes in between used to get a second task ("task missing"), since
// Asynq deleted the first the moment it completed. Finished tasks now stay
// in Redis for jobs.OperationRetention, so that late enqueue — done here
// by hand, exactly as the relay does it — finds the task and adds nothing.
func TestRelayDoesNotRequeueFinishedOperations(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	redisOpt := asynq.RedisClientOpt{Addr: sys.Redis.Addr()}
	insp := asynq.NewInspector(redisOpt)
	defer insp.Close()
	client := asynq.NewClient(redisOpt)
	defer client.Close()

	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "relay-claw"})
	if op := sys.WaitOperation(t, token, create.ID); op.Status != "succeeded" {
		t.Fatalf("create finished as %+v", op)
	}
	// Wait for the task itself to be done (a wake-up may have run the
	// operation before Asynq delivered it).
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := insp.GetTaskInfo(jobs.QueueLifecycle, create.ID)
		if err != nil {
			t.Fatalf("task of %s: %v (a finished task is kept for jobs.OperationRetention)", create.ID, err)
		}
		if info.State == asynq.TaskStateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task of %s still %s after 30s", create.ID, info.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
	task, opts := jobs.NewOperationTask(create.ID)
	added, err := jobs.Enqueue(context.Background(), client, nil, task, opts...)
	if err != nil || added {
		t.Fatalf("the relay's late enqueue of a finished operation: added %v, %v", added, err)
	}
}

// TestQueuedOperationsAreHandedOff: operations accepted on an instance
// while an earlier one runs (their wake-ups give up after about a second,
// since the machine takes longer than that to stop) are run by the run
// that finished the one before, holding the instance throughout, not by
// their tasks (30 s away here).
func TestQueuedOperationsAreHandedOff(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{
		Worker: func(o *worker.Options) { o.PollInterval = 30 * time.Second },
		Flysim: func(o *flysim.Options) { o.Delay = 2 * time.Second },
	})
	_, token := sys.NewAccount(t, "pro")
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: sys.Redis.Addr()})
	defer insp.Close()
	metric := func(name string) float64 { return sys.Metrics(t).Value(name) }

	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "queued-claw"})
	if op := sys.WaitOperation(t, token, create.ID); op.Status != "succeeded" {
		t.Fatalf("create finished as %+v", op)
	}
	before := metric("mocd_worker_handoffs_total")
	var ops []Operation
	for _, call := range []string{"stop", "start", "restart"} {
		ops = append(ops, accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/"+call, token, nil))
	}
	for _, op := range ops {
		if done := sys.WaitOperation(t, token, op.ID); done.Status != "succeeded" {
			t.Fatalf("%s finished as %+v", op.Type, done)
		}
	}
	ranOnceNotByTask(t, sys, insp, ops...)
	if n := metric("mocd_worker_handoffs_total") - before; n != 2 {
		t.Errorf("%v hand-offs, want 2 (the start after the stop, the restart after the start)", n)
	}
}
