package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// MaxWaitTimeout is the longest a server holds one wait call (55 s, under
// the 60 s idle timeout of most proxies).
const MaxWaitTimeout = 55 * time.Second

// WaitOperation is one long-poll: the server answers the operation as soon
// as it has ended, or after timeout (1–55 s; 0 means the server's default
// of 30 s) as it is then. Most callers want Wait, which repeats it.
// Scope operations:read.
func (c *Client) WaitOperation(ctx context.Context, operationID string, timeout time.Duration) (*Operation, error) {
	q := map[string][]string{}
	hold := 30 * time.Second
	if timeout > 0 {
		secs := min(max(int(timeout/time.Second), 1), int(MaxWaitTimeout/time.Second))
		q["timeout"] = []string{strconv.Itoa(secs)}
		hold = time.Duration(secs) * time.Second
	}
	return callT[Operation](ctx, c, request{
		method: http.MethodGet, path: pathOf("operations", operationID, "wait"),
		query: q, longPoll: hold,
	})
}

// CancelOperation cancels a pending operation and answers it; one that has
// started already is a 409 operation_not_cancellable. Scope instance:write.
func (c *Client) CancelOperation(ctx context.Context, operationID string, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodPost, pathOf("operations", operationID, "cancel"), nil, opts)
}

// WaitOption adjusts Wait.
type WaitOption func(*waitOptions)

type waitOptions struct {
	progress     func(*Operation)
	pollInterval time.Duration
}

// WithProgress calls f with the operation each time Wait hears of it, a
// long-poll or a poll apart (for a progress line).
func WithProgress(f func(*Operation)) WaitOption {
	return func(o *waitOptions) { o.progress = f }
}

// WithPollInterval sets the first interval of the polling fallback
// (default 500 ms, growing to 5 s).
func WithPollInterval(d time.Duration) WaitOption {
	return func(o *waitOptions) { o.pollInterval = d }
}

// Wait blocks until the operation has ended and answers it. A failed or
// cancelled operation is answered together with an *OperationFailedError.
// When ctx ends first, Wait answers the operation as last seen (nil if it
// was never read) and an error that wraps ctx.Err()
// (context.DeadlineExceeded for a timeout).
//
// Wait long-polls GET /operations/{id}/wait, one request per 55 s at most;
// against a server without that route (404 or 405 for it while the
// operation itself exists) it polls GET /operations/{id}, backing off from
// 500 ms to 5 s. Transient errors are retried by the client's policy.
func (c *Client) Wait(ctx context.Context, operationID string, opts ...WaitOption) (*Operation, error) {
	o := waitOptions{pollInterval: 500 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	var last *Operation
	seen := func(op *Operation) (*Operation, bool, error) {
		last = op
		if o.progress != nil {
			o.progress(op)
		}
		if !op.Done() {
			return op, false, nil
		}
		if op.Status == OperationSucceeded {
			return op, true, nil
		}
		return op, true, &OperationFailedError{Operation: op}
	}
	ctxErr := func(err error) error {
		return fmt.Errorf("moc: wait for operation %s: %w", operationID, err)
	}

	for !c.noWaitRoute.Load() {
		hold := MaxWaitTimeout
		if dl, ok := ctx.Deadline(); ok {
			// Ask the server to answer before our deadline, so that the
			// last answer is the latest state rather than a cut request.
			hold = min(hold, time.Until(dl)-time.Second)
		}
		var op *Operation
		var err error
		if hold < time.Second && last == nil {
			// Too little time for a long-poll to answer: read the
			// operation once, so the caller learns where it stands.
			op, err = c.GetOperation(ctx, operationID)
		} else {
			op, err = c.WaitOperation(ctx, operationID, max(hold, time.Second))
		}
		switch {
		case err == nil:
			if op, done, err := seen(op); done {
				return op, err
			}
			continue
		case ctx.Err() != nil:
			return last, ctxErr(ctx.Err())
		case StatusOf(err) == http.StatusMethodNotAllowed:
			c.noWaitRoute.Store(true)
		case StatusOf(err) == http.StatusNotFound:
			// A 404 is either an unknown operation or a server without
			// the wait route: the operation itself tells them apart.
			op, gerr := c.GetOperation(ctx, operationID)
			if gerr != nil {
				if ctx.Err() != nil {
					return last, ctxErr(ctx.Err())
				}
				return last, gerr
			}
			c.noWaitRoute.Store(true)
			if op, done, err := seen(op); done {
				return op, err
			}
		default:
			return last, err
		}
	}

	interval := o.pollInterval
	for {
		op, err := c.GetOperation(ctx, operationID)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctxErr(ctx.Err())
			}
			return last, err
		}
		if op, done, err := seen(op); done {
			return op, err
		}
		if err := sleepCtx(ctx, interval); err != nil {
			return last, ctxErr(err)
		}
		interval = min(interval*3/2, 5*time.Second)
	}
}

// IsTimeout reports whether err is Wait giving up because its context's
// deadline passed.
func IsTimeout(err error) bool { return errors.Is(err, context.DeadlineExceeded) }
