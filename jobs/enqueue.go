package jobs

import (
	"context"
	"errors"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/telemetry"
)

// Enqueuer adds tasks to the queues; *asynq.Client satisfies it.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Inspector reads and deletes queued tasks; *asynq.Inspector satisfies it.
type Inspector interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
	DeleteTask(queue, id string) error
}

// Enqueue queues a task made by one of this package's constructors, after
// the transaction that committed its row (the outbox: an operation or a
// delivery) and reports whether Redis did not hold it yet. Every task's
// TaskID names its row, so a TaskID conflict is no error: the task is
// already queued (or scheduled, running, retrying, archived).
//
// Any other failure leaves the row without a task, which the worker's relay
// finds and queues within seconds; so a caller after a commit only logs it,
// and Enqueue does that when given a logger (the relay, which returns the
// error instead, passes nil). A nil q queues nothing and leaves every task
// to the relay (tests of the api alone).
func Enqueue(ctx context.Context, q Enqueuer, log *slog.Logger, task *asynq.Task, opts ...asynq.Option) (added bool, err error) {
	if q == nil {
		return false, nil
	}
	// The trace of the request or task that queues this one goes with it,
	// in the task's headers (Asynq keeps them with the task in Redis).
	if h := telemetry.Inject(ctx); h != nil {
		task = asynq.NewTaskWithHeaders(task.Type(), task.Payload(), h)
	}
	_, err = q.EnqueueContext(ctx, task, opts...)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return false, nil
	}
	if log != nil {
		_, id := placeOf(opts)
		log.WarnContext(ctx, "enqueue a task; the relay will retry",
			slog.String("task_type", task.Type()), slog.String("task_id", id), slog.Any("error", err))
	}
	return false, err
}

// Requeue is for a task that Enqueue found already in Redis: when Asynq
// has archived it (its retries ran out while its handler could not even
// record a failure), its TaskID stays taken until the task is deleted, so
// Requeue deletes it and queues it afresh (replaced is true). Otherwise it
// answers the task's state, or 0 when Redis no longer holds it (it ended
// since: the relay's next pass queues it if its row still needs it).
func Requeue(ctx context.Context, q Enqueuer, insp Inspector, task *asynq.Task, opts ...asynq.Option) (replaced bool, state asynq.TaskState, err error) {
	queue, id := placeOf(opts)
	info, err := insp.GetTaskInfo(queue, id)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	if info.State != asynq.TaskStateArchived {
		return false, info.State, nil
	}
	if err := insp.DeleteTask(queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return false, info.State, err
	}
	added, err := Enqueue(ctx, q, nil, task, opts...)
	if err != nil || !added {
		// Queued again by someone else between the delete and now.
		return false, asynq.TaskStatePending, err
	}
	return true, asynq.TaskStatePending, nil
}

// placeOf reads the queue and TaskID out of a constructor's options.
func placeOf(opts []asynq.Option) (queue, id string) {
	queue = "default"
	for _, o := range opts {
		switch o.Type() {
		case asynq.QueueOpt:
			queue, _ = o.Value().(string)
		case asynq.TaskIDOpt:
			id, _ = o.Value().(string)
		}
	}
	return queue, id
}
