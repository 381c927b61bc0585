package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
)

// AuditEntry is one authenticated request that changed something. Its JSON
// is the item of GET /api/v1/logs.
type AuditEntry struct {
	Seq         int64     `db:"seq" json:"-"`
	ID          string    `db:"id" json:"id"`
	AccountID   string    `db:"account_id" json:"-"`
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	KeyID       string    `db:"key_id" json:"key_id"`
	KeyName     string    `db:"key_name" json:"key_name"`
	Method      string    `db:"method" json:"method"`
	Path        string    `db:"path" json:"path"`
	Status      int       `db:"status" json:"status"`
	OperationID *string   `db:"operation_id" json:"operation_id"`
	ClientIP    string    `db:"client_ip" json:"client_ip"`
	RequestID   string    `db:"request_id" json:"request_id"`
}

// InsertAudit records an entry; callers pass the transaction of the change
// it reports, so that the entry exists exactly when the change does. It
// costs one INSERT inside a transaction that is open anyway: no extra
// commit, so no extra fsync (see BenchmarkAuditInChange).
func InsertAudit(ctx context.Context, db sqlx.ExtContext, e AuditEntry) error {
	const q = `INSERT INTO audit_log (id, account_id, key_id, key_name, method, path, status, operation_id, client_ip, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
	_, err := db.ExecContext(ctx, q, id.New(id.AuditLog), e.AccountID, e.KeyID, e.KeyName, e.Method, e.Path, e.Status, e.OperationID, e.ClientIP, e.RequestID)
	return mapErr(err)
}

// AuditFilter narrows ListAudit; zero fields match everything. From is
// inclusive, To exclusive.
type AuditFilter struct {
	KeyID string
	From  time.Time
	To    time.Time
}

const auditCols = `seq, id, account_id, created_at, key_id, key_name, method, path, status, operation_id, client_ip, request_id`

// ListAudit returns up to limit entries of an account, newest first, with
// seq below before (0: from the newest). It walks the (account_id[, key_id],
// seq DESC) index from the cursor on, so a deep page costs what the first
// one does; a time range filters the rows that walk meets.
func ListAudit(ctx context.Context, db sqlx.ExtContext, accountID string, f AuditFilter, before int64, limit int) ([]AuditEntry, error) {
	// Both halves are written out rather than folded into "$2 = '' OR
	// key_id = $2", so each has the one plan that uses its index.
	const all = `SELECT ` + auditCols + ` FROM audit_log
		WHERE account_id = $1
			AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
			AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
			AND ($4::bigint = 0 OR seq < $4::bigint)
		ORDER BY seq DESC LIMIT $5`
	const byKey = `SELECT ` + auditCols + ` FROM audit_log
		WHERE account_id = $1 AND key_id = $6
			AND ($2::timestamptz IS NULL OR created_at >= $2::timestamptz)
			AND ($3::timestamptz IS NULL OR created_at < $3::timestamptz)
			AND ($4::bigint = 0 OR seq < $4::bigint)
		ORDER BY seq DESC LIMIT $5`
	args := []any{accountID, nullTime(f.From), nullTime(f.To), before, limit}
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
