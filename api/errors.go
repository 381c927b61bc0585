package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/store"
)

// Error is an answer the client is meant to read: a status, a stable
// machine code and a human message. Handlers return it (or a store error
// kind) and ONE place, writeError, turns it into a response.
type Error struct {
	Status  int
	Code    string
	Message string
	// Header holds extra headers such as Retry-After or WWW-Authenticate.
	Header http.Header
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func newError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// badRequest is the 400 for input the caller must fix.
func badRequest(format string, args ...any) *Error {
	return newError(http.StatusBadRequest, "invalid_request", format, args...)
}

var errNotFound = newError(http.StatusNotFound, "not_found", "no such resource")

var errInstanceDeleting = newError(http.StatusConflict, "instance_deleting",
	"the instance is being deleted; no other operation can be accepted")

// errDatabaseUnavailable answers a request Postgres could not take (out
// of connection slots, restarting, a connection cut): transient, so a 503
// with Retry-After as for the rate limiter, never a 500. The request is
// not stored under its Idempotency-Key, so a retry runs afresh.
var errDatabaseUnavailable = &Error{Status: http.StatusServiceUnavailable, Code: "database_unavailable",
	Message: "the database cannot take this request right now; retry it in a moment",
	Header:  http.Header{"Retry-After": {"1"}}}

var errCursorExpired = newError(http.StatusGone, "cursor_expired",
	"the cursor is older than the event retention; events after it may be gone: start again without it")

// conflicts maps a unique index to the answer a client can act on.
var conflicts = map[string]*Error{
	"instances_subdomain_live": newError(http.StatusConflict, "subdomain_taken", "that subdomain is already taken"),
}

// errorBody is the contract's error shape.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// toAPIError is the one table from error kinds to HTTP answers.
func toAPIError(err error) (*Error, bool) {
	var apiErr *Error
	var conflict *store.ConflictError
	switch {
	case errors.As(err, &apiErr):
		return apiErr, true
	case errors.Is(err, store.ErrNotFound):
		return errNotFound, true
	case errors.Is(err, store.ErrInstanceDeleting):
		return errInstanceDeleting, true
	case errors.Is(err, store.ErrCursorExpired):
		return errCursorExpired, true
	case errors.Is(err, store.ErrInvalidValue):
		// The backstop behind each handler's own checks: Postgres refused a
		// value. The answer never carries Postgres's text.
		return badRequest("a value in the request cannot be stored (a control character such as NUL, or a time or number out of range)"), true
	case errors.As(err, &conflict):
		if e, ok := conflicts[conflict.Constraint]; ok {
			return e, true
		}
		return newError(http.StatusConflict, "conflict", "the request conflicts with the current state of the resource"), true
	case store.Unavailable(err):
		// Logged (expected is false): an operator needs to know.
		return errDatabaseUnavailable, false
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return newError(499, "client_closed_request", "client closed request"), true
	case errors.Is(err, context.DeadlineExceeded):
		return newError(http.StatusServiceUnavailable, "timeout", "the request took too long; retry it"), false
	}
	return newError(http.StatusInternalServerError, "internal_error", "internal error; the request id identifies it to support"), false
}

// writeError answers with the error shape. Unexpected errors are logged
// (with the request id, from the context); their text never reaches the
// client.
func writeError(c *gin.Context, log *slog.Logger, err error) {
	apiErr, expected := toAPIError(err)
	if !expected {
		log.ErrorContext(c.Request.Context(), "request failed",
			slog.String("path", c.FullPath()), slog.Any("error", err))
	}
	// Set, not Add: an error's header replaces one the chain set before
	// (the limiter sets Retry-After on a refusal too), and a client must
	// see exactly one Retry-After; Python's requests reads two as "1, 1".
	for k, vs := range apiErr.Header {
		c.Writer.Header()[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	c.AbortWithStatusJSON(apiErr.Status, errorBody{Error: apiErr.Message, Code: apiErr.Code})
}
