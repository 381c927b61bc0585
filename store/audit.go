package store

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// AuditEntry is one authenticated request that changed something.
type AuditEntry struct {
	Seq         int64   `db:"seq"`
	AccountID   string  `db:"account_id"`
	KeyID       string  `db:"key_id"`
	KeyName     string  `db:"key_name"`
	Method      string  `db:"method"`
	Path        string  `db:"path"`
	Status      int     `db:"status"`
	OperationID *string `db:"operation_id"`
	ClientIP    string  `db:"client_ip"`
	RequestID   string  `db:"request_id"`
}

// InsertAudit records an entry; callers pass the transaction of the change
// it reports, so that the entry exists exactly when the change does.
func InsertAudit(ctx context.Context, db sqlx.ExtContext, e AuditEntry) error {
	const q = `INSERT INTO audit_log (account_id, key_id, key_name, method, path, status, operation_id, client_ip, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`
	_, err := db.ExecContext(ctx, q, e.AccountID, e.KeyID, e.KeyName, e.Method, e.Path, e.Status, e.OperationID, e.ClientIP, e.RequestID)
	return mapErr(err)
}
