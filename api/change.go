package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// result is what a handler that changes something answers.
type result struct {
	status int
	body   any // marshalled to JSON; nil for an empty body (204)
	// location is the Location header (202 answers point at the operation).
	location string
	// operationID links the audit entry to the operation the call created.
	operationID string
	// afterCommit runs once the transaction has committed, before the answer
	// is written: enqueueing the operation's task. Its failure is logged,
	// never answered: the relay enqueues whatever was committed.
	afterCommit func(ctx context.Context)
}

// change is the one way a handler changes state. fn does its writes in tx;
// in the SAME transaction change records the audit entry and, when the
// request carries an Idempotency-Key, the exact response to replay. So a
// crash can never leave a change without its audit entry and stored
// response, nor a stored response without its change. The answer is
// written only after the commit.
func (s *Server) change(c *gin.Context, fn func(ctx context.Context, tx *sqlx.Tx) (result, error)) error {
	ctx := c.Request.Context()
	var res result
	var body []byte
	ctx, span := telemetry.Tracer().Start(ctx, "transaction "+c.FullPath())
	defer span.End()
	err := s.opts.Store.WithTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if res, err = fn(ctx, tx); err != nil {
			return err
		}
		if res.body != nil {
			if body, err = marshalJSON(res.body); err != nil {
				return err
			}
		}
		answer, err := s.idempotentAnswer(c, res.status, res.headers(), body)
		if err != nil {
			return err
		}
		return store.InsertAudit(ctx, tx, auditEntry(c, res), answer)
	})
	if err != nil {
		return err
	}
	markIdempotentStored(c)
	respond(ctx, c, res, body)
	return nil
}

// auditEntry is the audit entry of the call c that answered res.
func auditEntry(c *gin.Context, res result) store.AuditEntry {
	p := principal(c)
	entry := store.AuditEntry{
		AccountID: p.AccountID, KeyID: p.ID, KeyName: p.Name,
		Method: c.Request.Method, Path: c.Request.URL.Path, Status: res.status,
		ClientIP: c.ClientIP(), RequestID: requestID(c),
	}
	if res.operationID != "" {
		entry.OperationID = &res.operationID
	}
	return entry
}

// respond answers res, whose change has committed, with body (its JSON),
// after running its afterCommit.
func respond(ctx context.Context, c *gin.Context, res result, body []byte) {
	if res.afterCommit != nil {
		res.afterCommit(context.WithoutCancel(ctx))
	}
	for k, vs := range res.headers() {
		c.Header(k, vs[0])
	}
	if body == nil {
		c.Status(res.status)
		c.Writer.WriteHeaderNow()
		return
	}
	c.Data(res.status, "application/json; charset=utf-8", body)
}

func (r result) headers() http.Header {
	h := http.Header{}
	if r.location != "" {
		h.Set("Location", r.location)
	}
	return h
}
