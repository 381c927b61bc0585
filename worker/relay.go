package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// relayBatch bounds one read of unfinished operations.
const relayBatch = 500

// archivedCheckAfter: a pending operation this old whose task is still
// queued gets its task's state checked, in case asynq archived it.
const archivedCheckAfter = 30 * time.Second

// relay makes sure every unfinished operation has a task that will run it.
// It enqueues each with its TaskID: a conflict means the task is still in
// Redis; success means Redis had lost it (restarted empty, flushed) or the
// api crashed between its commit and its enqueue. Then it does the same for
// webhook deliveries.
func (w *Worker) relay(ctx context.Context) error {
	var errs []error
	var after int64
	seen := map[string]bool{}
	for {
		ops, err := store.UnfinishedOperations(ctx, w.st.DB, after, relayBatch)
		if err != nil {
			errs = append(errs, err)
			break
		}
		for _, op := range ops {
			seen[op.ID] = true
			if err := w.ensureQueued(ctx, op); err != nil {
				errs = append(errs, fmt.Errorf("relay operation %s: %w", op.ID, err))
			}
			after = op.Seq
		}
		if len(ops) < relayBatch {
			break
		}
	}
	w.mu.Lock()
	for opID := range w.suspects {
		if !seen[opID] {
			delete(w.suspects, opID)
		}
	}
	w.mu.Unlock()
	if err := w.deliveries.relay(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ensureQueued (re)enqueues one operation's task when Redis does not hold
// it, and rescues it when its task is stuck with a dead worker.
func (w *Worker) ensureQueued(ctx context.Context, op store.Operation) error {
	// A task queued again stays in the trace of the request that accepted
	// the operation: its headers carry the context the row kept.
	ctx = telemetry.WithTraceparent(ctx, op.Traceparent)
	task, opts := jobs.NewOperationTask(op.ID)
	added, err := jobs.Enqueue(ctx, w.client, nil, task, opts...)
	if err != nil {
		return err
	}
	if added {
		w.metrics.requeue(requeueOperation, requeueMissing)
		w.log.InfoContext(ctx, "relay: queued an operation whose task was missing", slog.String("operation_id", op.ID))
		w.clearSuspect(op.ID)
		return store.MarkEnqueued(ctx, w.st.DB, op.ID)
	}
	if op.Status == store.OpPending && time.Since(op.CreatedAt) < archivedCheckAfter {
		return nil // queued, and too young to be stuck
	}
	replaced, state, err := jobs.Requeue(ctx, w.client, w.insp, task, opts...)
	if err != nil {
		return err
	}
	if replaced {
		w.log.WarnContext(ctx, "relay: re-queued an operation whose task asynq had archived", slog.String("operation_id", op.ID))
		w.metrics.requeue(requeueOperation, requeueArchived)
		w.clearSuspect(op.ID)
		return store.MarkEnqueued(ctx, w.st.DB, op.ID)
	}
	// A pending operation can be stuck the same way: its task was taken by
	// a worker that died before it marked the operation running. A live
	// worker holds the instance lock within moments of taking a task, or
	// gives the task back (errWaiting), so two passes finding it active and
	// unlocked mean its worker is gone.
	if state != asynq.TaskStateActive || !w.orphaned(ctx, op) {
		w.clearSuspect(op.ID)
		return nil
	}
	// Asynq gives an active task of a dead worker back only once its lease
	// has been expired for 30s, checking once a minute: up to two minutes.
	// Seen orphaned twice in a row, the operation gets a second task now;
	// the instance lock keeps the two from ever running together.
	w.mu.Lock()
	w.suspects[op.ID]++
	n := w.suspects[op.ID]
	w.mu.Unlock()
	if n < 2 {
		return nil
	}
	w.clearSuspect(op.ID)
	task, opts = jobs.NewRescueTask(op.ID, op.Attempts)
	if _, err := jobs.Enqueue(ctx, w.client, nil, task, opts...); err != nil {
		return err
	}
	w.metrics.requeue(requeueOperation, requeueRescue)
	w.log.WarnContext(ctx, "relay: rescued an operation whose worker died", slog.String("operation_id", op.ID), slog.Int("attempts", op.Attempts))
	return store.MarkEnqueued(ctx, w.st.DB, op.ID)
}

// orphaned reports whether no worker holds the instance of a running
// operation whose task is active in Redis: the worker that took it died.
func (w *Worker) orphaned(ctx context.Context, op store.Operation) bool {
	held, err := store.InstanceLockHeld(ctx, w.st.DB, op.InstanceID)
	return err == nil && !held
}

func (w *Worker) clearSuspect(opID string) {
	w.mu.Lock()
	delete(w.suspects, opID)
	w.mu.Unlock()
}
