package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/telemetry"
)

// Operation types (API.md): one per lifecycle call.
const (
	OpCreate  = "instance.create"
	OpStart   = "instance.start"
	OpStop    = "instance.stop"
	OpRestart = "instance.restart"
	OpDelete  = "instance.delete"
	// OpUpgrade moves an instance to another OpenClaw version, rolling
	// back if it does not come up healthy; OpConfigure applies its
	// secrets to its machine.
	OpUpgrade   = "instance.upgrade"
	OpConfigure = "instance.configure"
)

// Operation statuses.
const (
	OpPending   = "pending"
	OpRunning   = "running"
	OpSucceeded = "succeeded"
	OpFailed    = "failed"
	// OpCancelled is a pending operation its owner cancelled: it never ran
	// and never will, and made no Fly call.
	OpCancelled = "cancelled"
)

// OpStatuses lists every operation status, for validating filters.
var OpStatuses = []string{OpPending, OpRunning, OpSucceeded, OpFailed, OpCancelled}

// OpTypes lists every operation type, for validating filters.
var OpTypes = []string{OpCreate, OpStart, OpStop, OpRestart, OpDelete, OpUpgrade, OpConfigure}

// Operation is an operations row (its public object is wire.Operation).
type Operation struct {
	Seq          int64      `db:"seq"`
	ID           string     `db:"id"`
	AccountID    string     `db:"account_id"`
	InstanceID   string     `db:"instance_id"`
	Type         string     `db:"type"`
	Status       string     `db:"status"`
	ErrorCode    *string    `db:"error_code"`
	ErrorMessage *string    `db:"error_message"`
	Attempts     int        `db:"attempts"`
	CreatedAt    time.Time  `db:"created_at"`
	StartedAt    *time.Time `db:"started_at"`
	FinishedAt   *time.Time `db:"finished_at"`
	EnqueuedAt   *time.Time `db:"enqueued_at"`
	// Version and Image are the target of an upgrade; FromState,
	// LeaseNonce and RollbackReason its progress (release.go).
	Version        *string `db:"version"`
	Image          *string `db:"image"`
	FromState      *string `db:"from_state"`
	LeaseNonce     *string `db:"lease_nonce"`
	RollbackReason *string `db:"rollback_reason"`
	// Traceparent is the W3C trace context of the accept that wrote the
	// row (telemetry.Traceparent), so that a run without task headers (a
	// wake-up) or a task queued again by the relay continues its trace.
	// Read by OperationToRun and UnfinishedOperations only.
	Traceparent *string `db:"traceparent"`
}

// OperationError is the error of a failed operation: a stable code and a
// message a user can act on.
type OperationError struct {
	Code    string
	Message string
}

// Terminal reports whether the operation has finished.
func (o Operation) Terminal() bool {
	return o.Status == OpSucceeded || o.Status == OpFailed || o.Status == OpCancelled
}

const opCols = `seq, id, account_id, instance_id, type, status, error_code, error_message,
	attempts, created_at, started_at, finished_at, enqueued_at,
	version, image, from_state, lease_nonce, rollback_reason`

// fields are the destinations of a row of opCols, in its order
// (TestOperationFieldsFollowOpCols holds the two together). The reads a
// client repeats most (a poll, a page of 51 rows) scan through it rather
// than through sqlx, whose reflection on every row cost more CPU than
// Postgres spent answering a page (BenchmarkHotPath/page).
func (o *Operation) fields() []any {
	return []any{&o.Seq, &o.ID, &o.AccountID, &o.InstanceID, &o.Type, &o.Status, &o.ErrorCode, &o.ErrorMessage,
		&o.Attempts, &o.CreatedAt, &o.StartedAt, &o.FinishedAt, &o.EnqueuedAt,
		&o.Version, &o.Image, &o.FromState, &o.LeaseNonce, &o.RollbackReason}
}

// opShownCols are the columns that an operation's public object
// (wire.Operation) shows, with seq (a page's cursor) and account_id: what
// the api's reads ask for (GetOperation, ListOperations), every other
// column left zero. Seven columns fewer than opCols are seven fewer that
// Postgres renders and lib/pq parses on each row of every poll and page.
const opShownCols = `seq, id, account_id, instance_id, type, status, error_code, error_message,
	created_at, started_at, finished_at`

// shownFields are the destinations of a row of opShownCols, in its order
// (TestOperationFieldsFollowOpCols).
func (o *Operation) shownFields() []any {
	return []any{&o.Seq, &o.ID, &o.AccountID, &o.InstanceID, &o.Type, &o.Status, &o.ErrorCode, &o.ErrorMessage,
		&o.CreatedAt, &o.StartedAt, &o.FinishedAt}
}

// getOperation runs q, which answers at most one row of opCols.
func getOperation(ctx context.Context, db sqlx.QueryerContext, q string, args ...any) (Operation, error) {
	return getOperationOf(ctx, db, (*Operation).fields, q, args...)
}

// getOperationOf runs q, which answers at most one row of the columns that
// dests gives the destinations of.
func getOperationOf(ctx context.Context, db sqlx.QueryerContext, dests func(*Operation) []any, q string, args ...any) (Operation, error) {
	var out Operation
	err := db.QueryRowxContext(ctx, q, args...).Scan(dests(&out)...)
	return out, err
}

// selectOperations runs q, which answers rows of opCols.
func selectOperations(ctx context.Context, db sqlx.QueryerContext, q string, args ...any) ([]Operation, error) {
	return selectRows(ctx, db, (*Operation).fields, q, args...)
}

// selectRows runs q and scans each row it answers into a new T, through
// the destinations dests gives (a hand-written scan: cheaper than sqlx's
// reflection on every row of the reads a client repeats most); never nil.
func selectRows[T any](ctx context.Context, db sqlx.QueryerContext, dests func(*T) []any, q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var v T
		if err := rows.Scan(dests(&v)...); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// InsertOperation stores a new pending operation: the outbox row that the
// worker's relay enqueues if the api's own enqueue is lost. Like every
// insert of an operation, it keeps the trace context of ctx with the row.
func InsertOperation(ctx context.Context, db sqlx.ExtContext, id, accountID, instanceID, opType string) (Operation, error) {
	const q = `INSERT INTO operations (id, account_id, instance_id, type, status, traceparent)
		VALUES ($1, $2, $3, $4, 'pending', $5) RETURNING ` + opCols
	out, err := getOperation(ctx, db, q, id, accountID, instanceID, opType, telemetry.Traceparent(ctx))
	return out, mapErr(err)
}

// ErrInstanceDeleting is the refusal of a new operation on an instance
// whose delete was accepted and has not finished.
var ErrInstanceDeleting = errors.New("store: a delete of the instance is under way")

// InsertCallOperation is InsertOperation for a call on an existing instance
// whose row the transaction has locked (LockInstance; inst as it read it,
// which the row lock makes the row's newest version). It refuses with
// ErrInstanceDeleting when a delete of the instance is under way
// (inst.DeletingOperationID). Otherwise one statement inserts the
// operation and has the call's effects on the instance (callEffects): it
// shows showing, unless that is "" or already shown, with its event row
// caused by the operation; a delete becomes the instance's deleting
// operation.
//
// The delete check reads the locked row, not the operations: a subquery
// reads the snapshot its statement took before waiting for the lock, so a
// delete accepted while it waited went unseen and a start slipped in
// behind it (issue 12: a deleted instance came back).
func InsertCallOperation(ctx context.Context, db sqlx.ExtContext, opID, accountID string, inst Instance, opType, showing string) (Operation, error) {
	if err := inst.acceptsOperations(); err != nil {
		return Operation{}, err
	}
	const q = `WITH i AS (SELECT $8::text AS status),
		op AS (INSERT INTO operations (id, account_id, instance_id, type, status, traceparent)
			VALUES ($1, $6, $3, $4, 'pending', $5) RETURNING ` + opCols + `),
		` + callEffects + `
		SELECT ` + opCols + ` FROM op`
	out, err := getOperation(ctx, db, q, opID, showing, inst.ID, opType, telemetry.Traceparent(ctx), accountID, id.New(id.Event), inst.Status)
	return out, mapErr(err)
}

// acceptsOperations is ErrInstanceDeleting when a delete of the instance is
// under way, nil otherwise; inst must have been read under its row lock.
func (inst Instance) acceptsOperations() error {
	if inst.DeletingOperationID != nil {
		return ErrInstanceDeleting
	}
	return nil
}

// AcceptCallOperation is the usual accept of a lifecycle call in ONE
// statement: it locks the account's instance's row (as LockInstance does)
// and, unless the instance is deleted or a delete of it is under way,
// inserts the operation with InsertCallOperation's effects. The row lock
// hands the statement the row's newest version, so its checks see every
// call accepted before it (migration 00013). ErrNotFound means nothing
// was queued and nothing written: the caller takes the long way
// (LockInstance, then InsertCallOperation), which tells why.
//
// With rec, the same statement writes what the call records besides, only
// if it queued the operation: a call then is this one statement, with no
// transaction around it (api's acceptAlone).
func AcceptCallOperation(ctx context.Context, db sqlx.ExtContext, opID, accountID, instanceID, opType, showing string, rec *CallRecord) (Operation, error) {
	args := []any{opID, showing, instanceID, opType, telemetry.Traceparent(ctx), accountID, id.New(id.Event)}
	q := acceptCall
	if rec != nil {
		q = acceptCallAudited
		e := rec.Audit
		e.AccountID, e.OperationID = accountID, &opID
		args = append(args, e.args()...)
		if rec.Answer != nil {
			if rec.CreatedAt.IsZero() {
				return Operation{}, errors.New("store: an answer to store needs the created_at it shows")
			}
			q = acceptCallAnswered
			args = append(append(args, rec.Answer.args()...), rec.CreatedAt)
		}
	}
	out, err := getOperation(ctx, db, q, args...)
	return out, mapErr(err)
}

// CallRecord is what an accepted lifecycle call records besides its
// operation, in AcceptCallOperation's statement.
type CallRecord struct {
	// Audit is the call's audit entry; its account and operation are set
	// to the call's.
	Audit AuditEntry
	// Answer, if any, is the answer to replay for the call's
	// Idempotency-Key, rendered before the statement: the operation it
	// shows is created at CreatedAt (a moment on the database's clock
	// before the statement, IdempotencyClaim.Clock on), not at now().
	Answer    *IdempotentAnswer
	CreatedAt time.Time
}

// acceptCallCTEs are AcceptCallOperation's CTEs, the operation created at
// createdAt; acceptCallAudited adds the audit entry ($8–$17) to them, and
// acceptCallAnswered the stored answer ($18–$23) with created_at $24.
func acceptCallCTEs(createdAt string) string {
	return `WITH i AS (SELECT status, deleting_operation_id FROM instances
				WHERE id = $3 AND account_id = $6 FOR NO KEY UPDATE),
		op AS (INSERT INTO operations (id, account_id, instance_id, type, status, traceparent, created_at)
			SELECT $1, $6, $3, $4, 'pending', $5, ` + createdAt + ` FROM i
			WHERE i.status <> 'deleted' AND i.deleting_operation_id IS NULL
			RETURNING ` + opCols + `),
		` + callEffects
}

const (
	auditCall = `,
		audit AS (` + auditInto + `
			SELECT $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 FROM op)`
	selectOp = ` SELECT ` + opCols + ` FROM op`
)

var (
	acceptCall         = acceptCallCTEs("now()") + selectOp
	acceptCallAudited  = acceptCallCTEs("now()") + auditCall + selectOp
	acceptCallAnswered = acceptCallCTEs("$24::timestamptz") + auditCall + `,
		answer AS (` + completeIdempotency(18) + ` AND EXISTS (SELECT 1 FROM op))` + selectOp
)

// callEffects are the CTEs of an accepted call's effects on its instance,
// once the CTE op has inserted the operation: $1 the operation's id, $2
// the status to show ("" for none), $3 the instance's id, $6 the
// account's, $7 the event's; the CTE i holds the status the instance
// showed, read under its row lock. (A delete becomes the instance's
// deleting operation by migration 00013's trigger.)
const callEffects = `s AS (UPDATE instances ` + setStatus + `
			WHERE id = $3 AND EXISTS (SELECT 1 FROM op) AND $2 <> '' AND status <> $2),
		ev AS (INSERT INTO instance_events (id, account_id, instance_id, operation_id, from_status, to_status)
			SELECT $7, $6, $3, $1, NULLIF(i.status, ''), $2 FROM i
			WHERE EXISTS (SELECT 1 FROM op) AND $2 <> '' AND i.status <> $2)`

// GetOperation reads one operation of an account: the columns its public
// object shows (opShownCols).
func GetOperation(ctx context.Context, db sqlx.ExtContext, accountID, opID string) (Operation, error) {
	const q = `SELECT ` + opShownCols + ` FROM operations WHERE id = $1 AND account_id = $2`
	out, err := getOperationOf(ctx, db, (*Operation).shownFields, q, opID, accountID)
	return out, mapErr(err)
}

// OperationByID reads an operation whatever its account, for the worker.
func OperationByID(ctx context.Context, db sqlx.ExtContext, opID string) (Operation, error) {
	const q = `SELECT ` + opCols + ` FROM operations WHERE id = $1`
	out, err := getOperation(ctx, db, q, opID)
	return out, mapErr(err)
}

// OperationFilter narrows ListOperations; zero fields match everything.
type OperationFilter struct {
	InstanceID string
	Status     string
	Type       string
	// CreatedAfter is inclusive, CreatedBefore exclusive.
	CreatedAfter, CreatedBefore time.Time
}

// ListOperations returns up to limit operations of an account, newest
// first, with seq below before (0: from the newest): the columns their
// public objects show (opShownCols).
func ListOperations(ctx context.Context, db sqlx.ExtContext, accountID string, f OperationFilter, before int64, limit int) ([]Operation, error) {
	const q = `SELECT ` + opShownCols + ` FROM operations
		WHERE account_id = $1
			AND ($2::text = '' OR instance_id = $2::text)
			AND ($3::text = '' OR status = $3::text)
			AND ($4::bigint = 0 OR seq < $4::bigint)
			AND ($6::text = '' OR type = $6::text)
			AND ($7::timestamptz IS NULL OR created_at >= $7::timestamptz)
			AND ($8::timestamptz IS NULL OR created_at < $8::timestamptz)
		ORDER BY seq DESC LIMIT $5`
	out, err := selectRows(ctx, db, (*Operation).shownFields, q, accountID, f.InstanceID, f.Status, before, limit,
		f.Type, nullTime(f.CreatedAfter), nullTime(f.CreatedBefore))
	return out, mapErr(err)
}

// CancelOperation moves a pending operation to cancelled and answers it as
// it now is. ErrNotFound means it is not pending (or not the account's):
// the caller reads it again to tell which.
//
// "(status = 'pending') IS TRUE" is a condition Postgres cannot look up in
// an index, so it finds the row by its primary key. Given "status =
// 'pending'", with statistics gathered while nothing was pending, it chose
// operations_account_status_seq and read every pending operation of the
// account (TestStatementsDoNotReadTheBacklog; migration 00012 tells why).
func CancelOperation(ctx context.Context, db sqlx.ExtContext, accountID, opID string) (Operation, error) {
	const q = `UPDATE operations SET status = 'cancelled', finished_at = now()
		WHERE id = $1 AND account_id = $2 AND (status = 'pending') IS TRUE RETURNING ` + opCols
	out, err := getOperation(ctx, db, q, opID, accountID)
	return out, mapErr(err)
}

// PendingOperationsOf lists the instance's pending operations, oldest first.
func PendingOperationsOf(ctx context.Context, db sqlx.ExtContext, instanceID string) ([]Operation, error) {
	const q = `SELECT ` + opCols + ` FROM operations
		WHERE instance_id = $1 AND status = 'pending' ORDER BY seq`
	out, err := selectOperations(ctx, db, q, instanceID)
	return out, mapErr(err)
}

// startOp is what every start of an operation sets: running, one attempt
// more, and started_at on the first.
const startOp = `status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, now())`

// StartOperation marks an unfinished operation running (one more attempt)
// in the transaction that holds its instance's row lock. ErrNotFound means
// it had already finished.
func StartOperation(ctx context.Context, db sqlx.ExtContext, opID string) (Operation, error) {
	const q = `UPDATE operations SET ` + startOp + `
		WHERE id = $1 AND status IN ('pending', 'running') RETURNING ` + opCols
	out, err := getOperation(ctx, db, q, opID)
	return out, mapErr(err)
}

// StartShowingOperation is the usual start of an operation in ONE
// statement and no transaction: it locks the instance's row, and marks the
// operation running only if the instance already shows the status the
// operation's start must show (showing; "" for none). It answers the
// operation, the instance, and what the start saw of both (for
// FinishSeen). ErrNotFound means nothing changed: the instance shows
// another status (an earlier operation finished after this one was
// accepted), or the operation has finished, or the instance is gone; the
// caller then takes the long way (LockInstance, StartOperation, the status
// change, in one transaction), which tells these apart.
func StartShowingOperation(ctx context.Context, db sqlx.ExtContext, op Operation, showing string) (Operation, Instance, Seen, error) {
	// The instance's row lock is taken before the operation's: the
	// operation's UPDATE waits on the locked CTE (its EXISTS is an
	// initplan), the order every other writer follows.
	q := `WITH i AS (SELECT ` + instanceCols + `, i.xmin::text AS row_version` + lockedInstance + `),
		o AS (UPDATE operations SET ` + startOp + `
			WHERE id = $3 AND status IN ('pending', 'running')
				AND EXISTS (SELECT 1 FROM i WHERE $4 = '' OR i.status = $4)
			RETURNING ` + opCols + `, xmin::text AS row_version)
		SELECT ` + instanceRowCols + `, ` + opRowCols + `,
			i.row_version AS instance_version, o.row_version AS operation_version, now() AS db_now FROM i, o`
	var out startedRow
	err := db.QueryRowxContext(ctx, q, op.InstanceID, op.AccountID, op.ID, showing).Scan(out.fields(false)...)
	return out.op, out.inst, out.seen(out.inst.Plan), mapErr(err)
}

// startedRow is the row a one-statement start answers: the instance's
// columns (instanceCols), the operation's (opCols), its traceparent if
// asked for, then seenCols. It is scanned by hand, not through sqlx's
// reflection, which cost a worker a tenth of its CPU per operation.
type startedRow struct {
	inst Instance
	op   Operation
	seenCols
}

// fields are the destinations of the row, in its order; traceparent says
// the row has the operation's traceparent after its opCols.
func (r *startedRow) fields(traceparent bool) []any {
	out := append(r.inst.fields(), r.op.fields()...)
	if traceparent {
		out = append(out, &r.op.Traceparent)
	}
	return append(out, &r.InstanceVersion, &r.OperationVersion, &r.DBNow)
}

// Started is what a statement that started an operation answers: the
// operation (with its Traceparent), the instance as it starts on it, and
// what the start saw of both (for FinishSeen).
type Started struct {
	Op       Operation
	Instance Instance
	Seen     Seen
}

// Querier is what TryLockStartByID runs its statement on: the lock's own
// connection in the worker, a transaction in a test.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// TryLockStartByID is the usual beginning of a run that knows only the
// operation's id (a wake-up, a task): in ONE statement it tries the
// instance's lock (as TryLockInstance) and, if it got it, reads the
// operation, takes the status its type shows while it runs from showing
// (by type; none for a type not in it), checks that no operation of the
// instance accepted before it is unfinished (as OperationToRun does) and
// starts it as StartShowingOperation does. Where the try-lock, the read
// and the start took three round trips, it takes one.
//
// locked says the session now holds the lock, whether or not anything
// started; the caller must then release it (InstanceLock.Release), and on
// an error too, since the lock may have been taken before the error.
// started is nil when nothing started: the operation is unknown, of
// another instance, finished, waits behind an earlier one, or the
// instance shows another status; the caller, holding the lock, reads the
// operation with OperationToRun, which tells these apart, and goes on as
// it would have.
//
// The statement's snapshot is taken before its try-lock runs, so its reads
// may miss a run that finished and gave the lock up in between. That
// cannot start anything twice or out of turn. The start is the UPDATE of
// the operation's row where it is pending or running, under the lock of
// the instance's row; under READ COMMITTED both act on the row's latest
// committed version and check their conditions again on it when it
// changed after the snapshot (Postgres's EvalPlanQual), so such a finish
// stops the start, and the status checked is the instance's latest
// (TestTryLockStartByIDChecksLatestRows). What only the snapshot reads
// (the older check) can make it start nothing when it could have, never
// the other way: the caller's OperationToRun then reads afresh, under the
// lock.
func TryLockStartByID(ctx context.Context, q Querier, instanceID, opID string, showing map[string]string) (locked bool, started *Started, err error) {
	types := slices.Sorted(maps.Keys(showing))
	statuses := make([]string, len(types))
	for n, t := range types {
		statuses[n] = showing[t]
	}
	// lk is read by the operation's read (an initplan: no row is locked
	// or written before it gives true) and by the answer, so the lock is
	// tried exactly once, whether or not the operation is there to read,
	// and nothing starts without it.
	//
	// The older check is a column, not a NOT EXISTS in the WHERE: as one,
	// Postgres planned it as an anti-join that read every unfinished
	// operation (TestStatementsDoNotReadTheBacklog); as a column, it looks
	// for one of the instance's, as OperationToRun does. The instance's
	// row lock is taken before the operation's, as every writer does (see
	// StartShowingOperation).
	stmt := `WITH lk AS MATERIALIZED (SELECT pg_try_advisory_lock($4) AS locked),
		r AS (SELECT o.instance_id, o.account_id, COALESCE(t.showing, '') AS showing, ` + olderUnfinishedOp + ` AS older
			FROM operations o LEFT JOIN unnest($2::text[], $3::text[]) AS t(type, showing) ON t.type = o.type
			WHERE o.id = $1 AND o.instance_id = $5 AND o.status IN ('pending', 'running') AND (SELECT locked FROM lk)),
		i AS (SELECT ` + instanceCols + `, i.xmin::text AS row_version
			FROM r, instances i JOIN accounts a ON a.id = i.account_id
			WHERE i.id = r.instance_id AND i.account_id = r.account_id AND NOT r.older FOR NO KEY UPDATE OF i),
		o AS (UPDATE operations SET ` + startOp + `
			WHERE id = $1 AND status IN ('pending', 'running')
				AND EXISTS (SELECT 1 FROM i, r WHERE r.showing = '' OR i.status = r.showing)
			RETURNING ` + opCols + `, traceparent, xmin::text AS row_version)
		SELECT lk.locked, o.id IS NOT NULL AS started, ` + instanceRowCols + `, ` + opRowCols + `, o.traceparent AS "o.traceparent",
			i.row_version AS instance_version, o.row_version AS operation_version, now() AS db_now
		FROM lk LEFT JOIN (i CROSS JOIN o) ON true`
	rows, err := q.QueryContext(ctx, stmt, opID, pq.Array(types), pq.Array(statuses), instanceLockKey(instanceID), instanceID)
	if err != nil {
		return false, nil, mapErr(err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return false, nil, mapErr(err)
		}
		return false, nil, errors.New("try-lock and start: the statement answered no row")
	}
	var (
		ok   bool
		out  startedRow
		dest = append([]any{&locked, &ok}, out.fields(true)...)
	)
	// When nothing started, the row's other columns are NULL, which its
	// fields cannot hold: the flags are read first, the rest only if it
	// started.
	flags := make([]any, len(dest))
	var skip any
	for n := range flags {
		flags[n] = &skip
	}
	flags[0], flags[1] = &locked, &ok
	if err := rows.Scan(flags...); err != nil {
		return false, nil, err
	}
	if !ok {
		return locked, nil, rows.Close()
	}
	if err := rows.Scan(dest...); err != nil {
		return locked, nil, err
	}
	return locked, &Started{Op: out.op, Instance: out.inst, Seen: out.seen(out.inst.Plan)}, rows.Close()
}

// seenCols scans what a start saw, as its statement answers it: the
// columns instance_version, operation_version and db_now.
type seenCols struct {
	InstanceVersion  string    `db:"instance_version"`
	OperationVersion string    `db:"operation_version"`
	DBNow            time.Time `db:"db_now"`
}

// seen is the Seen of these columns and the plan the start read.
func (c seenCols) seen(plan string) Seen {
	return Seen{instance: c.InstanceVersion, operation: c.OperationVersion, plan: plan, Clock: ClockAt(c.DBNow)}
}

// Clock is a reading of the database's clock (a statement's now()),
// carried forward by this process's monotonic clock: what a write rendered
// before it is sent dates its rows from (FinishSeen's finished_at, an
// accepted operation's created_at). The zero Clock was never read.
type Clock struct {
	at   time.Time // the database's now()
	read time.Time // this process's clock when it arrived, monotonic
}

// ClockAt is the Clock of the database's now() at, just read.
func ClockAt(at time.Time) Clock { return Clock{at: at, read: time.Now()} }

// Now is the database's clock as far as this process can tell: the
// reading plus the time passed here since, to the microsecond Postgres
// keeps (so that a row written with it reads back equal). It never runs
// behind the reading, whatever this machine's own clock says, nor ahead
// of the now() of a statement sent after it.
func (c Clock) Now() time.Time {
	return c.at.Add(time.Since(c.read)).Truncate(time.Microsecond).UTC()
}

// Read says the clock was read.
func (c Clock) Read() bool { return !c.at.IsZero() }

// Seen is what StartShowingOperation saw under the instance's row lock:
// the version of the instance's row and of the operation's (their xmin,
// which every update of a row changes), and the database's clock. While
// neither row has changed since, the worker knows every column of both,
// so it can write the operation's end and render the events reporting it
// before it writes them, all in one statement (FinishSeen). The zero Seen
// (a start that took the long way) matches no row.
//
// An instance's plan is its account's: Seen keeps the plan the start read,
// and the one-statement writes check it too.
type Seen struct {
	instance, operation string
	plan                string
	// Clock is the database's clock as the start read it: its Now never
	// runs behind the start's timestamps.
	Clock
}

// SeeStarted is what a start that took the long way saw, read at the end
// of its transaction, which holds the instance's row lock: the rows'
// versions once it commits, and the database's clock.
func SeeStarted(ctx context.Context, tx sqlx.ExtContext, op Operation) (Seen, error) {
	const q = `SELECT i.xmin::text AS instance_version, o.xmin::text AS operation_version, now() AS db_now, a.plan
		FROM instances i JOIN accounts a ON a.id = i.account_id, operations o WHERE i.id = $1 AND o.id = $2`
	var out struct {
		seenCols
		Plan string `db:"plan"`
	}
	err := sqlx.GetContext(ctx, tx, &out, q, op.InstanceID, op.ID)
	return out.seen(out.Plan), mapErr(err)
}

// Saw says the start saw both rows: a finish may try FinishSeen.
func (s Seen) Saw() bool { return s.instance != "" && s.operation != "" }

// Ended is the operation as FinishOperation or FinishSeen leaves it, had
// it ended at at with opErr (nil: succeeded).
func (o Operation) Ended(opErr *OperationError, at time.Time) Operation {
	o.Status, o.ErrorCode, o.ErrorMessage, o.FinishedAt = OpSucceeded, nil, nil, &at
	if opErr != nil {
		code, msg := opErr.Code, opErr.Message
		o.Status, o.ErrorCode, o.ErrorMessage = OpFailed, &code, &msg
	}
	if o.StartedAt == nil {
		o.StartedAt = &at
	}
	return o
}

// Rendered is what FinishSeen or StartSeen writes, rendered first: the
// instance as the statement leaves it (its status, updated_at and
// deleted_at are written from it: WithStatus), the id of the event row of
// its status change ("" when its status does not change), and the events
// reporting it all, rendered from these same values.
type Rendered struct {
	Instance       Instance
	StatusChangeID string
	Events         []QueuedEvent
}

// seenInstance and seenChange are the CTEs FinishSeen and StartSeen
// share. i locks the instance $8 of account $4 if its row is still at the
// version $9 and its account's plan still $10, as a Seen saw them, and
// reads its status; a lock that waited reads the row's newest version,
// whose xmin then differs. Once the CTE o has changed the operation $11,
// s writes the instance's status $13 ("" when it does not change),
// updated_at $12 and deleted_at $15, as rendered; changed records the
// change as the event row $14; and the rendered events are queued ($1 to
// $7 are queueEvents').
const (
	seenInstance = `i AS (SELECT i.id, i.status FROM instances i JOIN accounts a ON a.id = i.account_id
			WHERE i.id = $8 AND i.account_id = $4 AND i.xmin = $9::text::xid AND a.plan = $10 FOR NO KEY UPDATE OF i)`
	seenChange = `s AS (UPDATE instances SET status = $13, updated_at = $12, deleted_at = $15
			WHERE id = $8 AND $13 <> '' AND EXISTS (SELECT 1 FROM o) RETURNING xmin::text AS row_version),
		changed AS (INSERT INTO instance_events (id, account_id, instance_id, operation_id, from_status, to_status)
			SELECT $14, $4, $8, $11, NULLIF(i.status, ''), $13 FROM i WHERE $13 <> '' AND EXISTS (SELECT 1 FROM o)),
		ordered AS (SELECT pg_advisory_xact_lock($5) FROM o),
		` + queueEvents + `,
		d AS (` + insertDeliveries + `)`
)

// seenArgs are the arguments $1 to $15 of seenInstance and seenChange.
func seenArgs(ctx context.Context, op Operation, seen Seen, r Rendered) []any {
	status := ""
	if r.StatusChangeID != "" {
		status = r.Instance.Status
	}
	return append(queuedEventsArgs(ctx, op.AccountID, r.Events),
		op.InstanceID, seen.instance, seen.plan, op.ID, r.Instance.UpdatedAt, status, r.StatusChangeID, r.Instance.DeletedAt)
}

// FinishSeen is FinishOperation, the instance's status change and
// QueueWebhookEvents in ONE statement and no transaction, for the usual
// end of a run: it writes the operation as done (Operation.Ended) and the
// instance as r has them, rendered with their events from the rows the
// start saw (seen), and only if neither row has changed since. So the
// events report exactly what it writes. It answers the next pending
// operation of the instance, the deliveries, and what it left: the
// instance's row version for the next run's StartSeen. ErrNotFound means
// nothing changed: a row moved on
// (another operation accepted meanwhile changed the instance's status, a
// step of the run recorded something) or the operation has finished; the
// caller then takes the long way, which tells these apart.
func FinishSeen(ctx context.Context, db sqlx.ExtContext, done Operation, seen Seen, r Rendered) (next string, deliveries []string, after Seen, err error) {
	// The instance's row lock comes first, as in every writer.
	const q = `WITH ` + seenInstance + `,
			o AS (UPDATE operations SET status = $17, error_code = $18, error_message = $19,
					finished_at = $20, started_at = $21
				WHERE id = $11 AND instance_id = $8 AND xmin = $16::text::xid AND status IN ('pending', 'running')
					AND EXISTS (SELECT 1 FROM i)
				RETURNING instance_id, seq),
			` + seenChange + `
		SELECT ARRAY(SELECT id FROM d) AS deliveries,
			(SELECT p.id FROM operations p WHERE p.instance_id = o.instance_id AND p.seq > o.seq
				AND p.status = 'pending' ORDER BY p.seq LIMIT 1) AS next,
			COALESCE((SELECT row_version FROM s), $9) AS instance_version
		FROM o`
	if !seen.Saw() {
		return "", nil, Seen{}, ErrNotFound
	}
	args := append(seenArgs(ctx, done, seen, r),
		seen.operation, done.Status, done.ErrorCode, done.ErrorMessage, done.FinishedAt, done.StartedAt)
	var out struct {
		Deliveries      pq.StringArray `db:"deliveries"`
		Next            *string        `db:"next"`
		InstanceVersion string         `db:"instance_version"`
	}
	if err := sqlx.GetContext(ctx, db, &out, q, args...); err != nil {
		return "", nil, Seen{}, mapErr(err)
	}
	if out.Next != nil {
		next = *out.Next
	}
	seen.instance, seen.operation = out.InstanceVersion, ""
	return next, out.Deliveries, seen, nil
}

// StartSeen starts op on an instance whose row is as a FinishSeen left
// it (seen: the finish of the run that hands op over), moving it to the
// status it must show while op runs, in ONE statement and no
// transaction: the start, and the instance as r has it with the events,
// rendered from that row. It answers
// the operation and what the start saw, as StartShowingOperation does.
// ErrNotFound means nothing changed: the row moved on, or the operation
// has finished; the caller then starts it the usual way.
func StartSeen(ctx context.Context, db sqlx.ExtContext, op Operation, seen Seen, r Rendered) (Operation, Seen, []string, error) {
	q := `WITH ` + seenInstance + `,
			o AS (UPDATE operations SET ` + startOp + `
				WHERE id = $11 AND instance_id = $8 AND status IN ('pending', 'running') AND EXISTS (SELECT 1 FROM i)
				RETURNING ` + opCols + `, xmin::text AS row_version),
			` + seenChange + `
		SELECT ` + opRowCols + `, ARRAY(SELECT id FROM d) AS deliveries,
			s.row_version AS instance_version, o.row_version AS operation_version, now() AS db_now
		FROM o, s`
	if seen.instance == "" || r.StatusChangeID == "" {
		return op, Seen{}, nil, ErrNotFound
	}
	args := seenArgs(ctx, op, seen, r)
	var out struct {
		Operation  `db:"o"`
		Deliveries pq.StringArray `db:"deliveries"`
		seenCols
	}
	if err := sqlx.GetContext(ctx, db, &out, q, args...); err != nil {
		return op, Seen{}, nil, mapErr(err)
	}
	return out.Operation, out.seen(seen.plan), out.Deliveries, nil
}

// FinishOperation records an unfinished operation's outcome (opErr nil on
// success) and locks its instance's row for the rest of the caller's
// transaction, in one statement. It answers the operation, the instance as
// it was, and next: the id of the instance's next pending operation in
// accept order ("" if none), which the caller, holding the instance, may
// run at once. ErrNotFound means it had already finished (or the instance
// is gone): nothing changes.
func FinishOperation(ctx context.Context, tx sqlx.ExtContext, op Operation, opErr *OperationError) (done Operation, inst Instance, next string, err error) {
	// As in StartShowingOperation, the instance's row lock comes first.
	q := `WITH i AS (` + lockInstance + `),
		o AS (UPDATE operations SET status = $4, error_code = $5, error_message = $6,
				finished_at = now(), started_at = COALESCE(started_at, now())
			WHERE id = $3 AND status IN ('pending', 'running') AND EXISTS (SELECT 1 FROM i)
			RETURNING ` + opCols + `)
		SELECT ` + instanceRowCols + `, ` + opRowCols + `,
			(SELECT p.id FROM operations p WHERE p.instance_id = o.instance_id AND p.seq > o.seq
				AND p.status = 'pending' ORDER BY p.seq LIMIT 1) AS next
		FROM i, o`
	status, code, msg := OpSucceeded, (*string)(nil), (*string)(nil)
	if opErr != nil {
		status, code, msg = OpFailed, &opErr.Code, &opErr.Message
	}
	var out struct {
		instanceAndOperation
		Next *string `db:"next"`
	}
	if err := sqlx.GetContext(ctx, tx, &out, q, op.InstanceID, op.AccountID, op.ID, status, code, msg); err != nil {
		return Operation{}, Instance{}, "", mapErr(err)
	}
	if out.Next != nil {
		next = *out.Next
	}
	return out.Operation, out.Instance, next, nil
}

// instanceAndOperation scans a row of instanceRowCols and opRowCols.
type instanceAndOperation struct {
	Instance  `db:"i"`
	Operation `db:"o"`
}

// instanceRowCols and opRowCols select the columns of the CTEs i and o
// (instanceCols and opCols) under names of their own ("i.id", "o.id"), for
// instanceAndOperation.
var (
	instanceRowCols = aliased(instanceCols, "i")
	opRowCols       = aliased(opCols, "o")
)

// aliased selects each column of cols, unqualified, from the CTE named
// cte as "<cte>.<column>".
func aliased(cols, cte string) string {
	var out []string
	for _, c := range strings.Split(cols, ",") {
		c = strings.TrimSpace(c)
		if i := strings.LastIndexByte(c, '.'); i >= 0 {
			c = c[i+1:]
		}
		out = append(out, cte+"."+c+` AS "`+cte+"."+c+`"`)
	}
	return strings.Join(out, ", ")
}

// UnfinishedOperations lists up to limit pending or running operations,
// oldest first, for the relay; after pages by seq. "seq > 0", always true,
// is what lets it use operations_unfinished, which no other statement may
// (migration 00012).
func UnfinishedOperations(ctx context.Context, db sqlx.ExtContext, after int64, limit int) ([]Operation, error) {
	const q = `SELECT ` + opCols + `, traceparent FROM operations
		WHERE status IN ('pending', 'running') AND seq > 0 AND seq > $1 ORDER BY seq LIMIT $2`
	out := []Operation{}
	err := sqlx.SelectContext(ctx, db, &out, q, after, limit)
	return out, mapErr(err)
}

// MarkEnqueued records that the operation's task was (re)enqueued.
func MarkEnqueued(ctx context.Context, db sqlx.ExtContext, opID string) error {
	const q = `UPDATE operations SET enqueued_at = now() WHERE id = $1`
	_, err := db.ExecContext(ctx, q, opID)
	return mapErr(err)
}

// HasUnfinishedOperation reports whether any operation of the instance is
// pending or running.
func HasUnfinishedOperation(ctx context.Context, db sqlx.ExtContext, instanceID string) (bool, error) {
	const q = `SELECT EXISTS (SELECT 1 FROM operations
		WHERE instance_id = $1 AND status IN ('pending', 'running'))`
	var ok bool
	err := sqlx.GetContext(ctx, db, &ok, q, instanceID)
	return ok, mapErr(err)
}

// InstanceLock is a Postgres session advisory lock on one instance, held on
// a connection of its own while an operation of the instance runs. It makes
// operations of one instance mutually exclusive across every worker process,
// even when one task is delivered twice (Redis lost it and the relay queued
// it again while a worker still ran it); Postgres releases it by itself when
// the holder's connection dies with its process.
type InstanceLock struct {
	conn *sql.Conn
	key  int64
	slot chan struct{}
}

// instanceLockKey maps an instance id to the advisory lock's 64-bit key.
func instanceLockKey(instanceID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mocd/instance/" + instanceID))
	return int64(h.Sum64())
}

// TryLockInstance takes the instance's lock without waiting for another
// session to give it up; ok is false when one holds it. It does wait, as
// long as ctx allows, for one of the Store's lock slots (see Store).
func (s *Store) TryLockInstance(ctx context.Context, instanceID string) (lock *InstanceLock, ok bool, err error) {
	l, err := s.lockConn(ctx, instanceID)
	if err != nil {
		return nil, false, err
	}
	if err := l.conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&ok); err != nil || !ok {
		l.giveBack()
		if err != nil {
			return nil, false, fmt.Errorf("lock instance %s: %w", instanceID, err)
		}
		return nil, false, nil
	}
	return l, true, nil
}

// TryLockStarting is TryLockInstance and, when it got the lock, the start
// of opID (TryLockStartByID) in one round trip. lock is nil when another
// session holds the instance's lock; otherwise the caller releases it.
// started is nil when the lock was taken but nothing started (see
// TryLockStartByID).
func (s *Store) TryLockStarting(ctx context.Context, instanceID, opID string, showing map[string]string) (lock *InstanceLock, started *Started, err error) {
	l, err := s.lockConn(ctx, instanceID)
	if err != nil {
		return nil, nil, err
	}
	locked, started, err := TryLockStartByID(ctx, l.conn, instanceID, opID, showing)
	switch {
	case err != nil:
		// The lock may have been taken before the statement failed.
		l.Release()
		return nil, nil, fmt.Errorf("lock instance %s and start %s: %w", instanceID, opID, err)
	case !locked:
		l.giveBack()
		return nil, nil, nil
	}
	return l, started, nil
}

// lockConn takes a lock slot and a connection of its own for an instance
// lock, not yet taken.
func (s *Store) lockConn(ctx context.Context, instanceID string) (*InstanceLock, error) {
	slot := s.lockSlots // nil in a Store not made by Open: no bound
	if slot != nil {
		select {
		case slot <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("lock instance %s: %w", instanceID, ctx.Err())
		}
	}
	l := &InstanceLock{key: instanceLockKey(instanceID), slot: slot}
	var err error
	if l.conn, err = s.DB.Conn(ctx); err != nil {
		l.freeSlot()
		return nil, fmt.Errorf("lock instance %s: %w", instanceID, err)
	}
	return l, nil
}

// giveBack returns the connection and the slot of a lock not taken.
func (l *InstanceLock) giveBack() {
	l.conn.Close()
	l.freeSlot()
}

// Release gives the lock back. If that fails the connection is thrown away
// rather than returned to the pool still holding the lock; closing it
// releases the lock on the server.
func (l *InstanceLock) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
		_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	l.giveBack()
}

func (l *InstanceLock) freeSlot() {
	if l.slot != nil {
		<-l.slot
	}
}

// InstanceLockHeld reports whether some session holds the instance's lock,
// by trying it for the length of a transaction (which also conflicts with
// session locks of the same key).
func InstanceLockHeld(ctx context.Context, db *sqlx.DB, instanceID string) (bool, error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var free bool
	if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, instanceLockKey(instanceID)).Scan(&free); err != nil {
		return false, mapErr(err)
	}
	return !free, nil
}

// olderUnfinishedOp is true when an operation of the instance of the
// operation o was accepted before it and has not finished.
const olderUnfinishedOp = `EXISTS (SELECT 1 FROM operations p
	WHERE p.instance_id = o.instance_id AND p.seq < o.seq AND p.status IN ('pending', 'running'))`

// OperationToRun reads an operation for the worker that holds its
// instance's lock, with whether an operation of the instance accepted
// before it has not finished (operations of one instance run one at a
// time, in the order accepted): one round trip for what a run must know
// before it starts.
func OperationToRun(ctx context.Context, db sqlx.ExtContext, opID string) (op Operation, olderUnfinished bool, err error) {
	const q = `SELECT ` + opCols + `, traceparent, ` + olderUnfinishedOp + ` AS older
		FROM operations o WHERE o.id = $1`
	var out struct {
		Operation
		Older bool `db:"older"`
	}
	err = sqlx.GetContext(ctx, db, &out, q, opID)
	return out.Operation, out.Older, mapErr(err)
}
