package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
)

// InstanceEvent is one change of an instance's status (its public object
// is wire.InstanceEvent).
type InstanceEvent struct {
	Seq         int64     `db:"seq"`
	ID          string    `db:"id"`
	AccountID   string    `db:"account_id"`
	InstanceID  string    `db:"instance_id"`
	OperationID *string   `db:"operation_id"`
	FromStatus  *string   `db:"from_status"`
	ToStatus    string    `db:"to_status"`
	CreatedAt   time.Time `db:"created_at"`
}

const eventCols = `seq, id, account_id, instance_id, operation_id, from_status, to_status, created_at`

// InsertInstanceEvent records a status change from → to (from empty for
// the first status) caused by operation opID (empty for drift the
// reconciler found). Callers pass the transaction of the change itself.
func InsertInstanceEvent(ctx context.Context, db sqlx.ExtContext, accountID, instanceID, opID, from, to string) (InstanceEvent, error) {
	const q = `INSERT INTO instance_events (id, account_id, instance_id, operation_id, from_status, to_status)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6) RETURNING ` + eventCols
	var out InstanceEvent
	err := sqlx.GetContext(ctx, db, &out, q, id.New(id.Event), accountID, instanceID, opID, from, to)
	out.CreatedAt = out.CreatedAt.UTC()
	return out, mapErr(err)
}

// ListInstanceEvents returns up to limit events of an account's instance,
// newest first, with seq below before (0: from the newest).
func ListInstanceEvents(ctx context.Context, db sqlx.ExtContext, accountID, instanceID string, before int64, limit int) ([]InstanceEvent, error) {
	const q = `SELECT ` + eventCols + ` FROM instance_events
		WHERE instance_id = $1 AND account_id = $2 AND ($3::bigint = 0 OR seq < $3::bigint)
		ORDER BY seq DESC LIMIT $4`
	out := []InstanceEvent{}
	err := sqlx.SelectContext(ctx, db, &out, q, instanceID, accountID, before, limit)
	for i := range out {
		out[i].CreatedAt = out[i].CreatedAt.UTC()
	}
	return out, mapErr(err)
}

// InstanceEventCause is an instance event with the type and current status
// of the operation that caused it (nil for drift).
type InstanceEventCause struct {
	InstanceEvent
	OpType   *string `db:"op_type"`
	OpStatus *string `db:"op_status"`
}

// RecentInstanceEvents returns the instance's last limit status changes,
// newest first, each with its operation's type and status: what a cancel
// needs to put the status back as it was before the cancelled operation.
func RecentInstanceEvents(ctx context.Context, db sqlx.ExtContext, instanceID string, limit int) ([]InstanceEventCause, error) {
	const q = `SELECT e.seq, e.id, e.account_id, e.instance_id, e.operation_id, e.from_status, e.to_status, e.created_at,
			o.type AS op_type, o.status AS op_status
		FROM instance_events e LEFT JOIN operations o ON o.id = e.operation_id
		WHERE e.instance_id = $1 ORDER BY e.seq DESC LIMIT $2`
	out := []InstanceEventCause{}
	err := sqlx.SelectContext(ctx, db, &out, q, instanceID, limit)
	return out, mapErr(err)
}
