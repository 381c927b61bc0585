package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/plan"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
)

// ReservedSubdomains are names no instance may take: they belong, or may
// one day belong, to MyOpenClaw itself under the instances' base domain.
// This list is the one place they are kept; API.md documents it.
var ReservedSubdomains = []string{
	"about", "account", "accounts", "admin", "api", "app", "apps", "assets", "auth",
	"billing", "blog", "cdn", "console", "dashboard", "dev", "docs", "email",
	"ftp", "help", "imap", "internal", "login", "mail", "mx", "myopenclaw",
	"ns1", "ns2", "openclaw", "pop", "root", "security", "signup", "smtp",
	"staging", "static", "status", "support", "test", "webhooks", "www",
}

// FlyRegions are the Fly.io region codes an instance may be placed in.
var FlyRegions = []string{
	"ams", "arn", "atl", "bog", "bom", "bos", "cdg", "den", "dfw", "ewr", "eze",
	"fra", "gdl", "gig", "gru", "hkg", "iad", "jnb", "lax", "lhr", "mad", "mia",
	"nrt", "ord", "otp", "phx", "qro", "scl", "sea", "sin", "sjc", "syd", "waw",
	"yul", "yyz",
}

// DefaultRegion is where an instance goes when the create names none.
const DefaultRegion = "iad"

// validSubdomain checks a DNS label of 3–63 of a-z, 0-9 and "-", without a
// hyphen at either end, that is not reserved; it says what is wrong.
func validSubdomain(s string) error {
	if len(s) < 3 || len(s) > 63 {
		return badRequest("subdomain must be 3 to 63 characters long")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return badRequest("subdomain may contain only lowercase letters a-z, digits and hyphens")
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return badRequest("subdomain must not start or end with a hyphen")
	}
	if slices.Contains(ReservedSubdomains, s) {
		return badRequest("subdomain %q is reserved; choose another", s)
	}
	return nil
}

// errInstanceLimit is the answer to a create over the plan's quota.
func errInstanceLimit(p *store.Principal, limit int) error {
	return newError(http.StatusForbidden, "instance_limit_reached",
		"the %s plan allows %d instances; delete one or upgrade the plan", p.Plan, limit)
}

func (s *Server) instanceJSON(i store.Instance) wire.Instance {
	return wire.NewInstance(i, s.opts.BaseDomain)
}

func (s *Server) listInstances(c *gin.Context) error {
	list, err := store.ListInstances(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, wire.List(list, s.instanceJSON))
	return nil
}

func (s *Server) getInstance(c *gin.Context) error {
	instID := c.Param("id")
	if !id.HasPrefix(instID, id.Instance) {
		return errNotFound
	}
	inst, err := store.GetInstance(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID, instID)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, s.instanceJSON(inst))
	return nil
}

type createInstanceRequest struct {
	Subdomain *string `json:"subdomain"`
	FlyRegion *string `json:"fly_region"`
	Version   *string `json:"version"`
}

func (s *Server) createInstance(c *gin.Context) error {
	var req createInstanceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Subdomain == nil {
		return badRequest("subdomain is required")
	}
	sub := *req.Subdomain
	if err := validSubdomain(sub); err != nil {
		return err
	}
	region := DefaultRegion
	if req.FlyRegion != nil {
		region = *req.FlyRegion
		if !slices.Contains(FlyRegions, region) {
			return badRequest("fly_region %q is not a Fly.io region; use one of %s", region, strings.Join(FlyRegions, ", "))
		}
	}
	release, err := s.resolveVersion(req.Version)
	if err != nil {
		return err
	}
	p := principal(c)
	limit := plan.Of(p.Plan).Instances
	volumeGB := plan.Of(p.Plan).VolumeGB
	return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
		live, err := store.LockAccountForQuota(ctx, tx, p.AccountID)
		if err != nil {
			return result{}, err
		}
		if live >= limit {
			return result{}, errInstanceLimit(p, limit)
		}
		inst, err := store.InsertInstance(ctx, tx, id.New(id.Instance), p.AccountID, sub, region, store.StatusCreating)
		if err != nil {
			return result{}, err
		}
		if inst, err = store.SetInstanceRelease(ctx, tx, inst.ID, release.Version, release.Image, volumeGB); err != nil {
			return result{}, err
		}
		op, err := store.InsertOperation(ctx, tx, id.New(id.Operation), p.AccountID, inst.ID, store.OpCreate)
		if err != nil {
			return result{}, err
		}
		if _, err := store.InsertInstanceEvent(ctx, tx, p.AccountID, inst.ID, op.ID, "", store.StatusCreating); err != nil {
			return result{}, err
		}
		return s.accepted(op), nil
	})
}

// lockLiveInstance locks the account's instance for a change in tx; a
// deleted one is a 404, as an unknown id is.
func lockLiveInstance(ctx context.Context, tx *sqlx.Tx, accountID, instID string) (store.Instance, error) {
	inst, err := store.LockInstance(ctx, tx, accountID, instID)
	if err == nil && inst.Status == store.StatusDeleted {
		err = errNotFound
	}
	return inst, err
}

// lifecycle handles start, stop, restart and delete: one statement locks
// the instance, queues the operation behind any earlier one, shows the
// transitional status and records the call (acceptAlone); the worker does
// the rest. When that statement queues nothing, one transaction tells why.
func (s *Server) lifecycle(opType, transitional string) handlerFunc {
	return func(c *gin.Context) error {
		instID := c.Param("id")
		if !id.HasPrefix(instID, id.Instance) {
			return errNotFound
		}
		if done, err := s.acceptAlone(c, instID, opType, transitional); done || err != nil {
			return err
		}
		p := principal(c)
		return s.change(c, func(ctx context.Context, tx *sqlx.Tx) (result, error) {
			// Nothing was queued: the long way says why (a 404, or a 409
			// while a delete is under way), or queues the operation if the
			// instance changed meanwhile.
			inst, err := lockLiveInstance(ctx, tx, p.AccountID, instID)
			if err != nil {
				return result{}, err
			}
			op, err := store.InsertCallOperation(ctx, tx, id.New(id.Operation), p.AccountID, inst, opType, transitional)
			if err != nil {
				return result{}, err
			}
			return s.accepted(op), nil
		})
	}
}

// acceptAlone is a lifecycle call in ONE statement, with no transaction
// around it: the accept, its effects, its audit entry and, with an
// Idempotency-Key, the answer to replay, which commit together as
// change's transaction would. That answer shows the operation before the
// statement writes it, so the operation's created_at is chosen first: the
// database's clock as the key's claim read it, plus the time elapsed since
// (store.Clock), a moment before the statement runs; without a
// key it is the statement's now(). done false means nothing was queued and
// nothing written: the caller takes change's way, which tells why (a 404,
// a 409).
func (s *Server) acceptAlone(c *gin.Context, instID, opType, transitional string) (done bool, err error) {
	ctx, span := telemetry.Tracer().Start(c.Request.Context(), "transaction "+c.FullPath())
	defer span.End()
	opID := id.New(id.Operation)
	rec := &store.CallRecord{Audit: auditEntry(c, result{status: http.StatusAccepted, operationID: opID})}
	var res result
	var body []byte
	if v, keyed := c.Get(ctxIdempotency); keyed {
		clock := v.(*idempotencyClaim).dbClock
		if !clock.Read() {
			return false, nil // a key taken over: change's way stores its answer
		}
		at := clock.Now()
		res = s.accepted(store.Operation{ID: opID, InstanceID: instID, Type: opType, Status: store.OpPending, CreatedAt: at})
		if body, err = marshalJSON(res.body); err != nil {
			return false, err
		}
		if rec.Answer, err = s.idempotentAnswer(c, res.status, res.headers(), body); err != nil {
			return false, err
		}
		rec.CreatedAt = at
	}
	op, err := store.AcceptCallOperation(ctx, s.opts.Store.DB, opID, rec.Audit.AccountID, instID, opType, transitional, rec)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rec.Answer == nil {
		res = s.accepted(op)
		if body, err = marshalJSON(res.body); err != nil {
			return false, err
		}
	}
	markIdempotentStored(c)
	respond(ctx, c, res, body)
	return true, nil
}

// accepted is the 202 of every lifecycle call; the task is enqueued once
// the operation is committed.
func (s *Server) accepted(op store.Operation) result {
	return result{
		status:      http.StatusAccepted,
		body:        wire.NewOperation(op),
		location:    "/api/v1/operations/" + op.ID,
		operationID: op.ID,
		// A failure to enqueue is only logged (jobs.Enqueue): the
		// operation is committed and the relay queues it, and Redis down
		// must not turn an accepted call into an error the client retries.
		afterCommit: func(ctx context.Context) {
			s.counters.acceptedOp(op.Type)
			task, opts := jobs.NewOperationTask(op.ID)
			jobs.Enqueue(ctx, s.opts.Enqueuer, s.log, task, opts...)
		},
	}
}

func (s *Server) listInstanceEvents(c *gin.Context) error {
	instID := c.Param("id")
	if !id.HasPrefix(instID, id.Instance) {
		return errNotFound
	}
	scope := "events|" + instID
	limit, before, err := s.pageParams(c, scope)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	accountID := principal(c).AccountID
	ok, err := store.InstanceExists(ctx, s.opts.Store.DB, accountID, instID)
	if err != nil {
		return err
	}
	if !ok {
		return errNotFound
	}
	rows, err := store.ListInstanceEvents(ctx, s.opts.Store.DB, accountID, instID, before, limit+1)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, newPage(c, s, scope, rows, limit, func(e store.InstanceEvent) int64 { return e.Seq }, wire.NewInstanceEvent))
	return nil
}
