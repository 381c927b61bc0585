package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/trace"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/webhook"
)

// transitional is the status an instance shows while an operation of the
// type runs; settled is the one it reaches when it succeeds.
var (
	transitional = map[string]string{
		store.OpCreate: store.StatusCreating, store.OpStart: store.StatusStarting,
		store.OpStop: store.StatusStopping, store.OpRestart: store.StatusRestarting,
		store.OpDelete: store.StatusDeleting, store.OpUpgrade: store.StatusRestarting,
	}
	settled = map[string]string{
		store.OpCreate: store.StatusRunning, store.OpStart: store.StatusRunning,
		store.OpStop: store.StatusStopped, store.OpRestart: store.StatusRunning,
		store.OpDelete: store.StatusDeleted,
	}
)

// handleOperation runs one operation task. Every delivery of a task, first
// or repeated, takes the same path: finished operations are skipped, the
// instance's advisory lock and the accept order decide who runs, and each
// Fly step looks before it acts.
func (w *Worker) handleOperation(ctx context.Context, t *asynq.Task) error {
	var p jobs.OperationPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.OperationID == "" {
		return fmt.Errorf("operation task with payload %q: %w", t.Payload(), asynq.SkipRetry)
	}
	// A wake-up may be carrying the operation out in this process right
	// now (wake.go): wait for it rather than bounce off the instance lock
	// and come back later.
	if err := w.woken.wait(ctx, p.OperationID); err != nil {
		return err
	}
	// Finished here by a wake-up or a hand-off, and committed: nothing
	// to read (the usual end of a task whose operation a wake-up ran).
	if w.woken.wasFinished(p.OperationID) {
		return nil
	}
	op, err := store.OperationByID(ctx, w.st.DB, p.OperationID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("operation %s does not exist: %w", p.OperationID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	if op.Terminal() {
		return nil
	}
	lock, started, err := w.tryLockStarting(ctx, op.InstanceID, op.ID)
	if err != nil {
		return err
	}
	if lock == nil {
		return errWaiting
	}
	defer lock.Release()
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	return w.runLocked(ctx, op.ID, retried, retried >= maxRetry, false, started, nil)
}

// tryLockStarting takes the instance's lock and, with it, starts the
// operation when nothing stands in its way, in one statement
// (store.TryLockStarting). lock nil: another run holds the instance.
// started nil: the lock is taken but nothing started, and runLocked reads
// the operation to find out why.
func (w *Worker) tryLockStarting(ctx context.Context, instanceID, opID string) (*store.InstanceLock, *begun, error) {
	at := time.Now()
	lock, started, err := w.st.TryLockStarting(ctx, instanceID, opID, transitional)
	if started == nil {
		return lock, nil, err
	}
	w.metrics.started(started.Op)
	return lock, &begun{Started: *started, at: at}, err
}

// begun is a run whose operation the statement that took its lock
// started, and when that statement was sent: the run's beginning.
type begun struct {
	store.Started
	at time.Time
}

// runLocked carries out an operation whose instance lock the caller holds:
// the part of a run that a task and a wake-up share. retried counts the
// earlier attempts for the log; last says no retry will follow, so a Fly
// failure must finish the operation as failed rather than leave it to the
// next attempt. woken says a wake-up runs it: no task headers carried its
// trace here, so the run continues the trace kept in the operation's row.
// started is the operation as the statement that took the lock started
// it (tryLockStarting), nil when that started nothing. from is the
// instance as the run before left it, when that run hands this one over
// (handOff); nil otherwise.
func (w *Worker) runLocked(ctx context.Context, opID string, retried int, last, woken bool, started *begun, from *handed) (err error) {
	began := time.Now()
	var (
		op   store.Operation
		inst store.Instance
		seen store.Seen
	)
	if started != nil {
		op, inst, seen, began = started.Op, started.Instance, started.Seen, started.at
	} else {
		// Read under the lock (another delivery may have finished it),
		// then start it the way its state asks for.
		var older bool
		if op, older, err = store.OperationToRun(ctx, w.st.DB, opID); err != nil {
			return err
		}
		if op.Terminal() {
			return nil
		}
		if older {
			return errWaiting
		}
	}
	if woken {
		var span trace.Span
		ctx, span = startWokenSpan(ctx, op, began)
		defer func() { endSpan(span, err) }()
	}
	if started == nil {
		op, inst, seen, err = w.begin(ctx, op, from)
		if errors.Is(err, store.ErrNotFound) {
			return nil // finished meanwhile by another delivery
		} else if err != nil {
			return err
		}
	}

	final, opErr, err := w.carryOut(ctx, op, inst)
	if err != nil {
		if ctx.Err() != nil || !last {
			w.log.WarnContext(ctx, "operation step failed; retrying", slog.String("operation_id", op.ID),
				slog.String("type", op.Type), slog.Int("retry", retried), slog.Any("error", err))
			return err
		}
		// The last attempt: the operation must still finish.
		opErr = &store.OperationError{Code: "fly_unavailable",
			Message: fmt.Sprintf("the Fly.io Machines API kept failing after %d attempts: %v", retried+1, err)}
		final = w.honestStatus(ctx, inst)
	}
	next, left, err := w.finish(ctx, op, inst, seen, final, opErr)
	if err != nil {
		return err
	}
	if woken {
		w.woken.finishedHere(op.ID)
	}
	if next != "" {
		w.handOff(ctx, next, left)
	}
	if opErr != nil {
		return fmt.Errorf("operation %s failed: %s: %w", op.ID, opErr.Code, asynq.SkipRetry)
	}
	return nil
}

// begin marks the operation running and, if an earlier operation left the
// instance in another status, shows this one's transitional status again.
// It answers the instance as the operation starts on it, and what the
// start saw (for finish). Usually the instance already shows that status
// (the accept set it): then one statement does it all, with no transaction
// to open and commit.
//
// A run handed over by the one before (from) usually finds the instance
// showing the status that run ended with: then its one statement also
// changes the status, with events rendered from the row as that run left
// it (store.StartSeen). A run not handed over comes here only once the
// statement that took its lock (tryLockStarting) has started nothing: it
// takes the long way at once, since a second try of that start would fail
// the same way.
func (w *Worker) begin(ctx context.Context, op store.Operation, from *handed) (store.Operation, store.Instance, store.Seen, error) {
	// An instance.configure shows no transitional status: a stopped
	// instance stays stopped while it runs.
	t := transitional[op.Type]
	if from != nil {
		if t != "" && from.inst.Status != t {
			started, inst, seen, err := w.startSeen(ctx, op, from, t)
			if err == nil {
				return started, inst, seen, nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return op, inst, store.Seen{}, fmt.Errorf("start operation %s: %w", op.ID, err)
			}
		}
		started, inst, seen, err := store.StartShowingOperation(ctx, w.st.DB, op, t)
		if err == nil {
			w.metrics.started(started)
			return started, inst, seen, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return op, inst, store.Seen{}, fmt.Errorf("start operation %s: %w", op.ID, err)
		}
	}
	var (
		inst       store.Instance
		seen       store.Seen
		deliveries []string
	)
	err := w.st.WithTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if inst, err = store.LockInstance(ctx, tx, op.AccountID, op.InstanceID); err != nil {
			return err
		}
		if op, err = store.StartOperation(ctx, tx, op.ID); err != nil {
			return err
		}
		if t != "" {
			if inst, deliveries, err = w.changeStatus(ctx, tx, inst, t, op.ID); err != nil {
				return err
			}
		}
		// One round trip more here saves the finish four.
		seen, err = store.SeeStarted(ctx, tx, op)
		return err
	})
	if err != nil {
		return op, inst, store.Seen{}, fmt.Errorf("start operation %s: %w", op.ID, err)
	}
	w.metrics.started(op)
	w.enqueueDeliveries(ctx, deliveries)
	return op, inst, seen, nil
}

// handed is an instance as a run's finish left it (store.FinishSeen): its
// row as the run rendered it, and the row's version.
type handed struct {
	inst store.Instance
	seen store.Seen
}

// startSeen is begin's one statement for a run handed over: the status
// change rendered from the row as the run before left it, then written
// with the start if the row has not moved since. ErrNotFound: it has.
func (w *Worker) startSeen(ctx context.Context, op store.Operation, from *handed, status string) (store.Operation, store.Instance, store.Seen, error) {
	r := store.Rendered{Instance: from.inst.WithStatus(status, from.seen.Now()), StatusChangeID: id.New(id.Event)}
	ev, err := w.statusChanged(r.StatusChangeID, from.inst, r.Instance, op.ID)
	if err != nil {
		return op, from.inst, store.Seen{}, err
	}
	r.Events = []store.QueuedEvent{ev}
	started, seen, deliveries, err := store.StartSeen(ctx, w.st.DB, op, from.seen, r)
	if err != nil {
		return op, from.inst, store.Seen{}, err
	}
	w.metrics.started(started)
	w.enqueueDeliveries(ctx, deliveries)
	return started, r.Instance, seen, nil
}

// finish records the outcome in ONE transaction: the operation, the
// instance's status and its event, and the webhook deliveries reporting
// them (the outbox); the deliveries are enqueued after the commit.
//
// Usually neither row has changed since the start (seen; inst is the
// instance as it saw it): then the events are rendered first and one
// statement writes it all (store.FinishSeen), with no transaction to open
// and commit. Otherwise it takes the long way, which reads both rows
// under the instance's lock before it renders anything.
//
// It answers the instance's next pending operation, and, after the one
// statement, the instance as it left it (for that operation's start).
func (w *Worker) finish(ctx context.Context, op store.Operation, inst store.Instance, seen store.Seen,
	final string, opErr *store.OperationError) (next string, left *handed, err error) {
	done, deliveries, next, left, err := w.finishSeen(ctx, op, inst, seen, final, opErr)
	if errors.Is(err, store.ErrNotFound) {
		done, deliveries, next, err = w.finishLocked(ctx, op, final, opErr)
	}
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, nil // finished by another delivery of the task meanwhile
	}
	if err != nil {
		return "", nil, fmt.Errorf("finish operation %s: %w", op.ID, err)
	}
	w.metrics.finished(done)
	w.log.InfoContext(ctx, "operation finished", slog.String("operation_id", op.ID), slog.String("type", op.Type),
		slog.String("instance_id", op.InstanceID), slog.String("status", final), slog.Bool("failed", opErr != nil))
	w.enqueueDeliveries(ctx, deliveries)
	return next, left, nil
}

// finishSeen is finish's one statement: the operation and the instance
// as they will be, rendered into their events, then written if neither
// row has changed since seen. ErrNotFound: one has.
func (w *Worker) finishSeen(ctx context.Context, op store.Operation, inst store.Instance, seen store.Seen,
	final string, opErr *store.OperationError) (done store.Operation, deliveries []string, next string, left *handed, err error) {
	if !seen.Saw() {
		return op, nil, "", nil, store.ErrNotFound
	}
	done = op.Ended(opErr, seen.Now())
	r := store.Rendered{Instance: inst}
	if inst.Status != final {
		r.Instance, r.StatusChangeID = inst.WithStatus(final, *done.FinishedAt), id.New(id.Event)
		ev, err := w.statusChanged(r.StatusChangeID, inst, r.Instance, op.ID)
		if err != nil {
			return done, nil, "", nil, err
		}
		r.Events = append(r.Events, ev)
	}
	ev, err := w.operationEnded(done)
	if err != nil {
		return done, nil, "", nil, err
	}
	r.Events = append(r.Events, ev)
	next, deliveries, after, err := store.FinishSeen(ctx, w.st.DB, done, seen, r)
	if err != nil {
		return done, nil, "", nil, err
	}
	return done, deliveries, next, &handed{inst: r.Instance, seen: after}, nil
}

// finishLocked is finish's long way, in one transaction.
func (w *Worker) finishLocked(ctx context.Context, op store.Operation, final string,
	opErr *store.OperationError) (done store.Operation, deliveries []string, next string, err error) {
	err = w.st.WithTx(ctx, func(tx *sqlx.Tx) error {
		var inst store.Instance
		var err error
		if done, inst, next, err = store.FinishOperation(ctx, tx, op, opErr); err != nil {
			return err
		}
		_, events, err := w.showStatus(ctx, tx, inst, final, op.ID)
		if err != nil {
			return err
		}
		ev, err := w.operationEnded(done)
		if err != nil {
			return err
		}
		// The status change's event and the operation's, in one statement.
		deliveries, err = store.QueueWebhookEvents(ctx, tx, op.AccountID, append(events, ev)...)
		return err
	})
	return done, deliveries, next, err
}

// operationEnded is the event reporting a finished operation.
func (w *Worker) operationEnded(done store.Operation) (store.QueuedEvent, error) {
	typ := webhook.EventOperationSucceeded
	if done.Status == store.OpFailed {
		typ = webhook.EventOperationFailed
	}
	return newEvent(id.New(id.Event), typ, wire.NewOperation(done))
}

// handOff runs opID, the operation accepted next on the instance whose lock
// the caller holds, at once: a queue of operations on one instance is
// worked off by the run that holds it, instead of each waiting for a
// wake-up's retry or its task to find the instance free. It runs as a
// wake-up does (its task, if it comes to this process meanwhile, waits for
// it; anywhere else it finds the instance locked, and then the operation
// finished), and it hands off in turn. A failure leaves the operation to
// its task, as a wake-up's does.
func (w *Worker) handOff(ctx context.Context, opID string, from *handed) {
	done, ok := w.woken.start(opID)
	if !ok {
		return // a wake-up of this process is about to try it
	}
	defer done()
	w.metrics.handoffs.Inc()
	err := w.runLocked(ctx, opID, 0, false, true, nil, from)
	if err != nil && !errors.Is(err, errWaiting) && !errors.Is(err, asynq.SkipRetry) && ctx.Err() == nil {
		w.log.DebugContext(ctx, "handed-off run stopped; its task will carry on", slog.String("operation_id", opID), slog.Any("error", err))
	}
}

// changeStatus moves the locked instance to status, if it is not there
// already, with its event row and instance.status_changed deliveries.
func (w *Worker) changeStatus(ctx context.Context, tx *sqlx.Tx, inst store.Instance, status, opID string) (store.Instance, []string, error) {
	now, events, err := w.showStatus(ctx, tx, inst, status, opID)
	if err != nil || len(events) == 0 {
		return now, nil, err
	}
	ids, err := store.QueueWebhookEvents(ctx, tx, inst.AccountID, events...)
	return now, ids, err
}

// showStatus is changeStatus but for the deliveries: it answers the
// instance.status_changed event (none if the instance already shows
// status) for the caller to queue with its own.
func (w *Worker) showStatus(ctx context.Context, tx *sqlx.Tx, inst store.Instance, status, opID string) (store.Instance, []store.QueuedEvent, error) {
	if inst.Status == status {
		return inst, nil, nil
	}
	now, ev, err := store.ChangeInstanceStatus(ctx, tx, inst, status, opID)
	if err != nil {
		return inst, nil, err
	}
	qe, err := w.statusChanged(ev.ID, inst, now, opID)
	if err != nil {
		return inst, nil, err
	}
	return now, []store.QueuedEvent{qe}, nil
}

// statusChanged is the instance.status_changed event eventID: the
// instance moved from was to now, caused by operation opID ("" for none).
func (w *Worker) statusChanged(eventID string, was, now store.Instance, opID string) (store.QueuedEvent, error) {
	var cause *string
	if opID != "" {
		cause = &opID
	}
	return newEvent(eventID, webhook.EventInstanceStatusChanged, wire.StatusChanged{
		Instance: wire.NewInstance(now, w.opts.BaseDomain), FromStatus: was.Status, ToStatus: now.Status, OperationID: cause,
	})
}

// newEvent is the event eventID of type typ with data, as receivers get it.
func newEvent(eventID, typ string, data any) (store.QueuedEvent, error) {
	body, err := webhook.Envelope(typ, data)
	return store.QueuedEvent{ID: eventID, Type: typ, Payload: body}, err
}

// enqueueDeliveries queues committed deliveries; a failure is left to the
// relay, which finds pending deliveries without a task.
func (w *Worker) enqueueDeliveries(ctx context.Context, ids []string) {
	for _, d := range ids {
		task, opts := jobs.NewDeliveryTask(d, 0, time.Now())
		jobs.Enqueue(ctx, w.client, w.log, task, opts...)
	}
}
