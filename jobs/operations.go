package jobs

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
)

// TypeOperation carries out one lifecycle operation (create, start, stop,
// restart, delete of an instance).
const TypeOperation = "instance:operation"

// OperationPayload names the operation; everything else is read from
// Postgres, the source of truth, when the task runs.
type OperationPayload struct {
	OperationID string `json:"operation_id"`
}

// Operation tasks retry transient failures (Fly 5xx, network) up to
// OperationMaxRetry times, with a backoff the worker caps at a few seconds;
// the worker fails the operation on the last attempt, so an operation
// always finishes. OperationTimeout bounds one attempt: a create waits for
// its machine to start, which takes seconds to a couple of minutes on Fly.
const (
	OperationMaxRetry = 25
	OperationTimeout  = 10 * time.Minute
)

// OperationRetention keeps a finished operation task (and so its TaskID)
// in Redis this long. Without it Asynq deletes the task the moment its
// handler returns, and the relay, which reads the unfinished operations
// and then enqueues each one's task, re-queued every operation that
// finished in between as "missing" (hundreds of times in a `make bench`
// run): harmless, since the extra task only reads the finished row, but
// noise in the relay's log and metric and a wasted delivery. A minute
// covers a relay pass many times over; the cost is a small hash per
// operation of the last minute, which Asynq's janitor deletes.
const OperationRetention = time.Minute

// NewOperationTask makes the task of operation opID. Its TaskID is the
// operation id, so the api's enqueue and the relay's can never queue one
// operation twice (asynq answers ErrTaskIDConflict while it is queued).
func NewOperationTask(opID string) (*asynq.Task, []asynq.Option) {
	b, _ := json.Marshal(OperationPayload{OperationID: opID})
	return asynq.NewTask(TypeOperation, b), []asynq.Option{
		asynq.TaskID(opID),
		asynq.Queue(QueueLifecycle),
		asynq.MaxRetry(OperationMaxRetry),
		asynq.Timeout(OperationTimeout),
		asynq.Retention(OperationRetention),
	}
}

// NewRescueTask makes a second task for operation opID, with its own TaskID,
// for when the first is stuck as active in Redis after its worker died:
// asynq hands such a task back only once its lease has been expired for 30s,
// checking once a minute. Running an operation twice is safe (the worker
// holds a per-instance lock and skips finished operations), so the rescue
// may race the original.
func NewRescueTask(opID string, attempt int) (*asynq.Task, []asynq.Option) {
	task, opts := NewOperationTask(opID)
	opts[0] = asynq.TaskID(opID + "#rescue" + strconv.Itoa(attempt))
	return task, opts
}
