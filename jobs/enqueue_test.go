package jobs_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/testenv"
)

func TestEnqueueAndRequeue(t *testing.T) {
	r := testenv.StartRedis(t)
	ropt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(ropt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(ropt)
	t.Cleanup(func() { insp.Close() })
	ctx := context.Background()
	task, opts := jobs.NewDeliveryTask("whd_1", 0, time.Now().Add(time.Hour))

	t.Run("first enqueue adds the task", func(t *testing.T) {
		added, err := jobs.Enqueue(ctx, client, nil, task, opts...)
		if err != nil || !added {
			t.Fatalf("Enqueue = %v, %v; want added", added, err)
		}
	})
	t.Run("a TaskID conflict is already queued, not an error", func(t *testing.T) {
		added, err := jobs.Enqueue(ctx, client, nil, task, opts...)
		if err != nil || added {
			t.Fatalf("Enqueue = %v, %v; want not added, no error", added, err)
		}
	})
	t.Run("Requeue leaves a live task alone", func(t *testing.T) {
		replaced, state, err := jobs.Requeue(ctx, client, insp, task, opts...)
		if err != nil || replaced || state != asynq.TaskStateScheduled {
			t.Fatalf("Requeue = %v, %v, %v; want not replaced, scheduled", replaced, state, err)
		}
	})
	t.Run("Requeue replaces an archived task", func(t *testing.T) {
		if err := insp.ArchiveTask(jobs.QueueWebhooks, jobs.DeliveryTaskID("whd_1", 0)); err != nil {
			t.Fatal(err)
		}
		replaced, state, err := jobs.Requeue(ctx, client, insp, task, opts...)
		if err != nil || !replaced || state != asynq.TaskStatePending {
			t.Fatalf("Requeue = %v, %v, %v; want replaced, pending", replaced, state, err)
		}
		info, err := insp.GetTaskInfo(jobs.QueueWebhooks, jobs.DeliveryTaskID("whd_1", 0))
		if err != nil {
			t.Fatal(err)
		}
		if info.State == asynq.TaskStateArchived {
			t.Fatalf("task still archived after Requeue")
		}
	})
	t.Run("Requeue of a task Redis does not hold answers state 0", func(t *testing.T) {
		other, oopts := jobs.NewOperationTask("op_gone")
		replaced, state, err := jobs.Requeue(ctx, client, insp, other, oopts...)
		if err != nil || replaced || state != 0 {
			t.Fatalf("Requeue = %v, %v, %v; want nothing", replaced, state, err)
		}
	})
	t.Run("a failed enqueue is logged and returned", func(t *testing.T) {
		down := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)), DialTimeout: 200 * time.Millisecond})
		defer down.Close()
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		op, oopts := jobs.NewOperationTask("op_1")
		added, err := jobs.Enqueue(ctx, down, log, op, oopts...)
		if err == nil || added {
			t.Fatalf("Enqueue with Redis down = %v, %v; want an error", added, err)
		}
		if !strings.Contains(buf.String(), "the relay will retry") || !strings.Contains(buf.String(), "task_id=op_1") {
			t.Fatalf("log = %q; want the task id and the relay", buf.String())
		}
	})
	t.Run("a nil Enqueuer queues nothing", func(t *testing.T) {
		added, err := jobs.Enqueue(ctx, nil, nil, task, opts...)
		if err != nil || added {
			t.Fatalf("Enqueue(nil) = %v, %v", added, err)
		}
	})
}
