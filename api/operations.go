package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/webhook"
)

func (s *Server) getOperation(c *gin.Context) error {
	opID := c.Param("id")
	if !id.HasPrefix(opID, id.Operation) {
		return errNotFound
	}
	op, err := store.GetOperation(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID, opID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, wire.NewOperation(op))
	return nil
}

// listOperations serves the account's operations, newest first, filtered
// by instance, status, type and creation time, all combinable. Another
// account's instance id gives an empty page, exactly as an unknown one does.
func (s *Server) listOperations(c *gin.Context) error {
	f := store.OperationFilter{InstanceID: c.Query("instance_id"), Status: c.Query("status"), Type: c.Query("type")}
	if f.InstanceID != "" && !id.HasPrefix(f.InstanceID, id.Instance) {
		return badRequest("instance_id must be an instance id (inst_…)")
	}
	if f.Status != "" && !slices.Contains(store.OpStatuses, f.Status) {
		return badRequest("status must be one of %s", strings.Join(store.OpStatuses, ", "))
	}
	if f.Type != "" && !slices.Contains(store.OpTypes, f.Type) {
		return badRequest("type must be one of %s", strings.Join(store.OpTypes, ", "))
	}
	var err error
	if f.CreatedAfter, err = queryTime(c, "created_after"); err != nil {
		return err
	}
	if f.CreatedBefore, err = queryTime(c, "created_before"); err != nil {
		return err
	}
	if !f.CreatedAfter.IsZero() && !f.CreatedBefore.IsZero() && !f.CreatedAfter.Before(f.CreatedBefore) {
		return badRequest("created_after must be earlier than created_before")
	}
	// The cursor is bound to every filter: a cursor of another list cannot
	// be replayed here.
	scope := "ops|" + f.InstanceID + "|" + f.Status + "|" + f.Type + "|" + timeKey(f.CreatedAfter) + "|" + timeKey(f.CreatedBefore)
	limit, before, err := s.pageParams(c, scope)
	if err != nil {
		return err
	}
	rows, err := store.ListOperations(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID, f, before, limit+1)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, newPage(c, s, scope, rows, limit, func(o store.Operation) int64 { return o.Seq }, wire.NewOperation))
	return nil
}

// Long-poll bounds of GET /operations/:id/wait, in seconds (API.md).
const (
	defaultWaitSeconds = 30
	maxWaitSeconds     = 55
)

// waitOperation answers the operation as soon as it is terminal, or as it
// is when the timeout passes. It is woken by the NOTIFY that the commit
// finishing the operation sends (whichever process committed it), through
// the process's one listening connection: no polling, no connection of its
// own. It subscribes BEFORE it reads, so a commit between the two cannot
// be missed.
func (s *Server) waitOperation(c *gin.Context) error {
	opID := c.Param("id")
	if !id.HasPrefix(opID, id.Operation) {
		return errNotFound
	}
	timeout := defaultWaitSeconds * time.Second
	if v := c.Query("timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxWaitSeconds {
			return badRequest("timeout must be a whole number of seconds from 1 to %d", maxWaitSeconds)
		}
		timeout = time.Duration(n) * time.Second
	}
	// The server's read and write timeouts are shorter than a long wait.
	s.extendDeadlines(c, time.Now().Add(timeout+30*time.Second))

	ctx := c.Request.Context()
	accountID := principal(c).AccountID
	wake, stop := s.subscribe(store.ChannelOperationFinished, opID)
	defer stop()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	last := false
	for {
		op, err := store.GetOperation(ctx, s.opts.Store.DB, accountID, opID)
		if err != nil {
			return err
		}
		if op.Terminal() || last {
			c.JSON(http.StatusOK, wire.NewOperation(op))
			return nil
		}
		select {
		case <-wake:
		case <-timer.C:
			last = true
		case <-s.closing:
			last = true // shutting down: answer the state as it is now
		case <-ctx.Done():
			return ctx.Err() // the client went away: free everything
		}
	}
}

// pollFallback is how often a waiter or stream looks again when the server
// has no Notifier (only tests of other packages build one so).
const pollFallback = time.Second

// subscribe answers a channel that wakes its reader whenever the
// notification (channel, key) may have been sent, and the function that
// ends it.
func (s *Server) subscribe(channel, key string) (<-chan struct{}, func()) {
	if s.opts.Notifier == nil {
		t := time.NewTicker(pollFallback)
		c := make(chan struct{}, 1)
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-t.C:
					select {
					case c <- struct{}{}:
					default:
					}
				case <-done:
					return
				}
			}
		}()
		return c, func() { t.Stop(); close(done) }
	}
	sub := s.opts.Notifier.Subscribe(channel, key)
	return sub.C(), sub.Close
}

// extendDeadlines lets a long request outlive the server's ReadTimeout and
// WriteTimeout. The read deadline matters even for a GET: net/http's
// background read, which notices a client going away, would otherwise hit
// it and cancel the request. A zero t removes both deadlines.
func (s *Server) extendDeadlines(c *gin.Context, t time.Time) {
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(t)
	_ = rc.SetWriteDeadline(t)
}

var errNotCancellable = func(status string) error {
	return newError(http.StatusConflict, "operation_not_cancellable",
		"the operation is %s; only a pending operation can be cancelled", status)
}

// acceptStatus is the status a call shows from its accept on (see
// lifecycle), by operation type.
var acceptStatus = map[string]string{
	store.OpCreate: store.StatusCreating, store.OpStart: store.StatusStarting,
	store.OpStop: store.StatusStopping, store.OpRestart: store.StatusRestarting,
	store.OpDelete: store.StatusDeleting,
}

// cancelOperation cancels a pending operation: it will never run and makes
// no Fly call (the worker skips a terminal operation, and the instance's
// row lock orders this against the worker starting it). The instance's
// status goes back to what it was before the operation was accepted,
// unless something changed it since. Cancelling a create deletes the
// instance, which never existed on Fly, with the operations queued behind
// it. Each cancelled operation sends operation.cancelled.
func (s *Server) cancelOperation(c *gin.Context) error {
	opID := c.Param("id")
	if !id.HasPrefix(opID, id.Operation) {
		return errNotFound
	}
	p := principal(c)
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		op, err := store.GetOperation(ctx, tx, p.AccountID, opID)
		if err != nil {
			return result{}, err
		}
		inst, err := store.LockInstance(ctx, tx, p.AccountID, op.InstanceID)
		if err != nil {
			return result{}, err
		}
		cancelled, err := store.CancelOperation(ctx, tx, p.AccountID, opID)
		if errors.Is(err, store.ErrNotFound) {
			// Not pending (any more): read it under the lock to say why.
			if op, err = store.GetOperation(ctx, tx, p.AccountID, opID); err != nil {
				return result{}, err
			}
			return result{}, errNotCancellable(op.Status)
		}
		if err != nil {
			return result{}, err
		}
		all := []store.Operation{cancelled}
		if cancelled.Type == store.OpCreate {
			// The instance never came to exist: it is deleted, and what was
			// queued behind its create can never run.
			behind, err := store.PendingOperationsOf(ctx, tx, inst.ID)
			if err != nil {
				return result{}, err
			}
			for _, b := range behind {
				bc, err := store.CancelOperation(ctx, tx, p.AccountID, b.ID)
				if err != nil {
					return result{}, err
				}
				all = append(all, bc)
			}
			if _, _, err := store.ChangeInstanceStatus(ctx, tx, inst, store.StatusDeleted, cancelled.ID); err != nil {
				return result{}, err
			}
		} else if to, ok, err := s.statusBefore(ctx, tx, inst, cancelled); err != nil {
			return result{}, err
		} else if ok {
			if _, _, err := store.ChangeInstanceStatus(ctx, tx, inst, to, cancelled.ID); err != nil {
				return result{}, err
			}
		}
		var deliveries []string
		for _, o := range all {
			d, err := queueEvent(ctx, tx, p.AccountID, webhook.EventOperationCancelled, wire.NewOperation(o))
			if err != nil {
				return result{}, err
			}
			deliveries = append(deliveries, d...)
		}
		return result{
			status:      http.StatusOK,
			body:        wire.NewOperation(cancelled),
			operationID: cancelled.ID,
			afterCommit: func(ctx context.Context) {
				for _, d := range deliveries {
					task, opts := jobs.NewDeliveryTask(d, 0, time.Now())
					jobs.Enqueue(ctx, s.opts.Enqueuer, s.log, task, opts...)
				}
			},
		}, nil
	})
}

// statusBefore finds the status the instance showed before op's accept
// changed it. It answers ok=false when op's accept changed nothing or when
// something changed the status since (a later accept, the worker, drift):
// that later status is the truth and stays. Statuses that came from the
// accepts of operations cancelled since are looked past too.
func (s *Server) statusBefore(ctx context.Context, tx *sqlx.Tx, inst store.Instance, op store.Operation) (string, bool, error) {
	events, err := store.RecentInstanceEvents(ctx, tx, inst.ID, 50)
	if err != nil {
		return "", false, err
	}
	if len(events) == 0 {
		return "", false, nil
	}
	e := events[0]
	if e.OperationID == nil || *e.OperationID != op.ID || e.ToStatus != inst.Status || e.FromStatus == nil {
		return "", false, nil
	}
	to := *e.FromStatus
	for _, e := range events[1:] {
		if e.ToStatus != to || e.FromStatus == nil || e.OpStatus == nil || *e.OpStatus != store.OpCancelled ||
			e.OpType == nil || acceptStatus[*e.OpType] != e.ToStatus {
			break
		}
		to = *e.FromStatus
	}
	return to, to != inst.Status, nil
}

// queueEvent records an event in the feed and queues its webhook
// deliveries, in the caller's transaction, with the envelope receivers get.
func queueEvent(ctx context.Context, tx *sqlx.Tx, accountID, typ string, data any) ([]string, error) {
	body, err := webhook.Envelope(typ, data)
	if err != nil {
		return nil, err
	}
	return store.QueueWebhookEvent(ctx, tx, accountID, id.New(id.Event), typ, body)
}
