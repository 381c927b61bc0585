package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/store"
)

// Wake-ups: pick-up latency.
//
// Asynq finds new work by polling, and an idle server sleeps between polls
// (TaskCheckInterval/2 plus up to TaskCheckInterval of jitter): with one
// operation in flight per client, most of an operation's life was spent
// queued. Polling faster would multiply an idle worker's Redis calls. So
// the commit that accepts an operation also sends a NOTIFY (a trigger,
// migration 00008) carrying its id and its instance's; every worker
// listening on it tries the instance's lock at once and, if it wins, runs
// the operation then and there.
//
// The Asynq task stays the durable path and is never skipped: when it is
// delivered, the operation is finished (one read, nothing runs twice), or
// still being run by a wake-up in this process (the task waits for it), or
// running elsewhere (the instance lock says so and the task comes back, as
// for any two deliveries of one task).
//
// A wake-up that finds the instance lock taken, or an earlier operation of
// the instance not yet finished, tries again after 5, 10, 20 ms, then
// every 25 ms, about 1 s in all (wakeRetries). What holds a lock is mostly brief: the run
// before this one, between its finish's commit and its Release (the very
// commit its client waited on before asking for this operation); the
// reconciler's orphan sweep of the instance (a Fly list or two). Giving up
// at once sent those operations to their task, up to a whole poll
// (Options.PollInterval, plus Asynq's jitter) later. A wake-up stops at
// once when the operation is no longer pending: another worker's wake-up
// or a task has it. After about 1 s the task does as well as a wake-up
// would (it is delivered within a poll, and waits for this run, then
// retries a busy instance every few hundred ms), and a wake-up slot is not
// held longer. A lost notification, a wake-up that found every slot busy
// or the instance busy for the whole second, or one whose Fly step
// failed, simply leaves the operation to its task, which retries as it
// always did.

// ChannelOperationCreated is migration 00008's NOTIFY channel: its payload
// is "<operation id> <instance id>".
const ChannelOperationCreated = "mocd_operation_created"

// Waker delivers the payload of each notification on a channel (a
// *notify.Hub).
type Waker interface {
	Watch(channel string, fn func(payload string)) (stop func())
}

// wokenRuns are the operations this process is running on a wake-up (or a
// hand-off), so that their task, if it arrives meanwhile, waits for the run
// to end; and those such a run has finished, so that their task, when it
// comes, need not read the operation to find it finished.
type wokenRuns struct {
	mu   sync.Mutex
	runs map[string]chan struct{}
	wg   sync.WaitGroup
	// finished holds up to finishedKept operation ids, oldest first out.
	finished      map[string]struct{}
	finishedOrder []string
}

// finishedKept bounds wokenRuns.finished: far more than the tasks that can
// be on their way at once. An id pushed out only costs its task one read.
const finishedKept = 4096

// finishedHere records that a run of this process finished opID (its
// outcome committed).
func (r *wokenRuns) finishedHere(opID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished == nil {
		r.finished = map[string]struct{}{}
	}
	if _, ok := r.finished[opID]; ok {
		return
	}
	if len(r.finishedOrder) >= finishedKept {
		delete(r.finished, r.finishedOrder[0])
		r.finishedOrder = r.finishedOrder[1:]
	}
	r.finished[opID] = struct{}{}
	r.finishedOrder = append(r.finishedOrder, opID)
}

// wasFinished reports whether a run of this process finished opID, and
// forgets it: each operation has one task, delivered again only if this
// call's caller fails, which it does not.
func (r *wokenRuns) wasFinished(opID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.finished[opID]
	delete(r.finished, opID)
	return ok
}

// start registers a run of opID; false if one is already under way.
func (r *wokenRuns) start(opID string) (done func(), ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]chan struct{}{}
	}
	if _, busy := r.runs[opID]; busy {
		return nil, false
	}
	ch := make(chan struct{})
	r.runs[opID] = ch
	return func() {
		r.mu.Lock()
		delete(r.runs, opID)
		r.mu.Unlock()
		close(ch)
	}, true
}

// wait returns once no wake-up of this process runs opID.
func (r *wokenRuns) wait(ctx context.Context, opID string) error {
	r.mu.Lock()
	ch := r.runs[opID]
	r.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchCreated starts runs on wake-ups until stop is called; ctx is the
// runs' context. At most Concurrency runs go at once: beyond that a
// wake-up is dropped and the task carries the operation.
func (w *Worker) watchCreated(ctx context.Context) (stop func()) {
	slots := make(chan struct{}, w.opts.Concurrency)
	return w.opts.Waker.Watch(ChannelOperationCreated, func(payload string) {
		opID, instanceID, ok := strings.Cut(payload, " ")
		if !ok || opID == "" || instanceID == "" {
			return // "" after a reconnection: the tasks cover what was missed
		}
		select {
		case slots <- struct{}{}:
		default:
			w.metrics.wakeup(wakeDropped)
			return
		}
		w.woken.wg.Add(1)
		go func() {
			defer w.woken.wg.Done()
			defer func() { <-slots }()
			w.runWoken(ctx, opID, instanceID)
		}()
	})
}

// wakeRetries are the pauses of a wake-up between tries of a busy
// instance: 5, 10 and 20 ms first, for a lock about to be released (the
// run before, between its finish's commit and its release), then every
// 25 ms, adding up to about 1 s. The pause stays short because what else
// holds an instance is short too (the reconciler's sweep, only while
// it destroys an orphan it found) and a pause is latency the operation pays in full:
// with pauses doubling up to 365 ms, one unlucky try cost up to a third
// of a second. Each try costs a connection and a statement or two, and
// only while the instance is busy.
var wakeRetries = func() []time.Duration {
	d := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}
	for total := 35 * time.Millisecond; total < time.Second; total += 25 * time.Millisecond {
		d = append(d, 25*time.Millisecond)
	}
	return d
}()

// runWoken runs an operation on its wake-up, once its instance is free.
// Registered as running opID all along, so its task waits rather than
// bounce off the lock this wake-up is trying.
func (w *Worker) runWoken(ctx context.Context, opID, instanceID string) {
	done, ok := w.woken.start(opID)
	if !ok {
		w.metrics.wakeup(wakeTaken)
		return
	}
	defer done()
	outcome, err := w.tryWoken(ctx, opID, instanceID)
	for _, pause := range wakeRetries {
		if outcome != wakeBusy || !sleep(ctx, pause) {
			break
		}
		w.metrics.wakeRetries.Inc()
		outcome, err = w.tryWoken(ctx, opID, instanceID)
	}
	if ctx.Err() != nil {
		return // the worker is stopping: the task carries on
	}
	if outcome == wakeBusy {
		outcome = wakeLeft // busy for about 1 s: the task will come
	}
	w.metrics.wakeup(outcome)
	if err != nil {
		w.log.DebugContext(ctx, "woken run stopped; its task will carry on", slog.String("operation_id", opID), slog.Any("error", err))
	}
}

// sleep pauses for d, or less if ctx ends: false then.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// tryWoken is one try of a wake-up: wakeBusy when the instance's lock is
// taken or an earlier operation of it has not finished while the
// operation is still pending, so that another try may run it.
func (w *Worker) tryWoken(ctx context.Context, opID, instanceID string) (string, error) {
	lock, started, err := w.tryLockStarting(ctx, instanceID, opID)
	if err != nil {
		return wakeLeft, err // unreachable: the task will come
	}
	if lock == nil {
		// Someone else running it holds the lock too: no use trying again.
		op, err := store.OperationByID(ctx, w.st.DB, opID)
		if err != nil {
			return wakeLeft, err
		}
		if op.Status != store.OpPending {
			return wakeTaken, nil
		}
		return wakeBusy, nil
	}
	defer lock.Release()
	switch err := w.runLocked(ctx, opID, 0, false, true, started, nil); {
	case errors.Is(err, errWaiting):
		return wakeBusy, nil
	case err == nil, errors.Is(err, asynq.SkipRetry):
		return wakeRan, err // run (a failure is recorded), or just finished by another
	default:
		return wakeLeft, err
	}
}
