package worker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
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
// for any two deliveries of one task). A lost notification, a wake-up that
// found every slot busy or the lock taken, or one whose Fly step failed,
// simply leaves the operation to its task, which retries as it always did.

// ChannelOperationCreated is migration 00008's NOTIFY channel: its payload
// is "<operation id> <instance id>".
const ChannelOperationCreated = "mocd_operation_created"

// Waker delivers the payload of each notification on a channel (a
// *notify.Hub).
type Waker interface {
	Watch(channel string, fn func(payload string)) (stop func())
}

// wokenRuns are the operations this process is running on a wake-up, so
// that their task, if it arrives meanwhile, waits for the run to end.
type wokenRuns struct {
	mu   sync.Mutex
	runs map[string]chan struct{}
	wg   sync.WaitGroup
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

// runWoken runs an operation on its wake-up, if its instance is free.
func (w *Worker) runWoken(ctx context.Context, opID, instanceID string) {
	done, ok := w.woken.start(opID)
	if !ok {
		return
	}
	defer done()
	lock, ok, err := w.st.TryLockInstance(ctx, instanceID)
	if err != nil || !ok {
		return // busy or unreachable: the task will come
	}
	defer lock.Release()
	err = w.runLocked(ctx, opID, 0, false, true)
	if err != nil && !errors.Is(err, errWaiting) && ctx.Err() == nil {
		w.log.DebugContext(ctx, "woken run stopped; its task will carry on", slog.String("operation_id", opID), slog.Any("error", err))
	}
}
