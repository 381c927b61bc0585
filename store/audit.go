package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
)

// AuditEntry is one authenticated request that changed something (its
// public object is wire.LogEntry).
type AuditEntry struct {
	Seq         int64     `db:"seq"`
	ID          string    `db:"id"`
	AccountID   string    `db:"account_id"`
	CreatedAt   time.Time `db:"created_at"`
	KeyID       string    `db:"key_id"`
	KeyName     string    `db:"key_name"`
	Method      string    `db:"method"`
	Path        string    `db:"path"`
	Status      int       `db:"status"`
	OperationID *string   `db:"operation_id"`
	ClientIP    string    `db:"client_ip"`
	RequestID   string    `db:"request_id"`
}

// InsertAudit records an entry; callers pass the transaction of the change
// it reports, so that the entry exists exactly when the change does. It
// costs one INSERT inside a transaction that is open anyway: no extra
// commit, so no extra fsync (see BenchmarkAuditInChange).
//
// With answer, the same statement stores the answer of the request's
// claimed Idempotency-Key (CompleteIdempotencyKey's update): a change's
// audit entry and its answer to replay are one round trip in its
// transaction (api/change.go).
func InsertAudit(ctx context.Context, db sqlx.ExtContext, e AuditEntry, answer *IdempotentAnswer) error {
	args := e.args()
	q := insertAudit
	if answer != nil {
		q = insertAuditAndAnswer
		args = append(args, answer.args()...)
	}
	_, err := db.ExecContext(ctx, q, args...)
	return mapErr(err)
}

// auditInto is the INSERT of an audit entry, whose values follow: the ten
// of AuditEntry.args, in their order.
const auditInto = `INSERT INTO audit_log (id, account_id, key_id, key_name, method, path, status, operation_id, client_ip, request_id)`

const insertAudit = auditInto + ` VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

// args are the values of auditInto for a new entry e.
func (e AuditEntry) args() []any {
	return []any{id.New(id.AuditLog), e.AccountID, e.KeyID, e.KeyName, e.Method, e.Path, e.Status, e.OperationID, e.ClientIP, e.RequestID}
}

// insertAuditAndAnswer is insertAudit and then, from $11 on,
// completeIdempotency.
var insertAuditAndAnswer = `WITH audit AS (` + insertAudit + `) ` + completeIdempotency(11)

// AuditFilter narrows ListAudit; zero fields match everything. From is
// inclusive, To exclusive.
type AuditFilter struct {
	KeyID string
	From  time.Time
	To    time.Time
}

// AuditPosition is a place in an account's audit log: the entry a page
// ended with. The log is ordered by (created_at, seq), newest first; seq
// breaks ties between entries of the same microsecond.
type AuditPosition struct {
	CreatedAt time.Time
	Seq       int64
}

// Position is where a page that ends with e ends.
func (e AuditEntry) Position() AuditPosition {
	return AuditPosition{CreatedAt: e.CreatedAt, Seq: e.Seq}
}

const auditCols = `seq, id, account_id, created_at, key_id, key_name, method, path, status, operation_id, client_ip, request_id`

// ListAudit returns up to limit entries of an account, newest first,
// after the position after (zero: from the newest). Paging is by keyset on
// (created_at, seq) over the index (account_id[, key_id], created_at,
// seq): the time range and the cursor are both bounds of one index range,
// so the first page, a page a million entries deep and a page of a range
// long past each read one page of index and rows.
func ListAudit(ctx context.Context, db sqlx.ExtContext, accountID string, f AuditFilter, after AuditPosition, limit int) ([]AuditEntry, error) {
	// Two statements rather than "$2 = '' OR key_id = $2", so that each
	// has the one plan that uses its index.
	const all = `SELECT ` + auditCols + ` FROM audit_log
		WHERE account_id = $1
			AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
			AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
			AND ($4::bigint = 0 OR (created_at, seq) < ($5::timestamptz, $4::bigint))
		ORDER BY created_at DESC, seq DESC LIMIT $6`
	const byKey = `SELECT ` + auditCols + ` FROM audit_log
		WHERE account_id = $1 AND key_id = $7
			AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
			AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
			AND ($4::bigint = 0 OR (created_at, seq) < ($5::timestamptz, $4::bigint))
		ORDER BY created_at DESC, seq DESC LIMIT $6`
	var afterTime *time.Time
	if after.Seq != 0 {
		t := after.CreatedAt.UTC()
		afterTime = &t
	}
	args := []any{accountID, nullTime(f.From), nullTime(f.To), after.Seq, afterTime, limit}
	q := all
	if f.KeyID != "" {
		q, args = byKey, append(args, f.KeyID)
	}
	out := []AuditEntry{}
	if err := sqlx.SelectContext(ctx, db, &out, q, args...); err != nil {
		return nil, mapErr(err)
	}
	for i := range out {
		out[i].CreatedAt = out[i].CreatedAt.UTC()
	}
	return out, nil
}

// nullTime is NULL for the zero time, so that SQL can tell "no bound".
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
