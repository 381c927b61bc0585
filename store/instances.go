package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
)

// Instance statuses (API.md). The transitional ones say which operation is
// under way; running, stopped, deleted and failed are settled.
const (
	StatusCreating   = "creating"
	StatusStarting   = "starting"
	StatusRunning    = "running"
	StatusStopping   = "stopping"
	StatusStopped    = "stopped"
	StatusRestarting = "restarting"
	StatusDeleting   = "deleting"
	StatusDeleted    = "deleted"
	StatusFailed     = "failed"
)

// Instance is an instances row joined with its account's plan (its public
// object is wire.Instance).
type Instance struct {
	ID           string     `db:"id"`
	AccountID    string     `db:"account_id"`
	Subdomain    string     `db:"subdomain"`
	Status       string     `db:"status"`
	Plan         string     `db:"plan"`
	FlyRegion    string     `db:"fly_region"`
	FlyApp       *string    `db:"fly_app"`
	FlyMachineID *string    `db:"fly_machine_id"`
	CreatedAt    time.Time  `db:"created_at"`
	UpdatedAt    time.Time  `db:"updated_at"`
	DeletedAt    *time.Time `db:"deleted_at"`
	// Version is the OpenClaw version the instance runs and Image its
	// image; VolumeGB and FlyVolumeID describe its data volume.
	Version     string  `db:"version"`
	Image       string  `db:"image"`
	VolumeGB    int     `db:"volume_gb"`
	FlyVolumeID *string `db:"fly_volume_id"`
	// DeletingOperationID is the instance's unfinished instance.delete, if
	// one was accepted (migration 00013): no other operation is accepted
	// while it is set.
	DeletingOperationID *string `db:"deleting_operation_id"`
}

const instanceCols = `i.id, i.account_id, i.subdomain, i.status, a.plan, i.fly_region,
	i.fly_app, i.fly_machine_id, i.created_at, i.updated_at, i.deleted_at,
	i.version, i.image, i.volume_gb, i.fly_volume_id, i.deleting_operation_id`

// fields are the destinations of a row of instanceCols, in its order
// (TestInstanceFieldsFollowCols): the worker's start scans its row by
// hand, as the api's reads do, rather than through sqlx's reflection.
func (inst *Instance) fields() []any {
	return []any{&inst.ID, &inst.AccountID, &inst.Subdomain, &inst.Status, &inst.Plan, &inst.FlyRegion,
		&inst.FlyApp, &inst.FlyMachineID, &inst.CreatedAt, &inst.UpdatedAt, &inst.DeletedAt,
		&inst.Version, &inst.Image, &inst.VolumeGB, &inst.FlyVolumeID, &inst.DeletingOperationID}
}

// InsertInstance stores a new instance in the given status. A live
// instance already holding the subdomain is a *ConflictError on
// instances_subdomain_live.
func InsertInstance(ctx context.Context, db sqlx.ExtContext, id, accountID, subdomain, region, status string) (Instance, error) {
	const q = `WITH i AS (
			INSERT INTO instances (id, account_id, subdomain, status, fly_region)
			VALUES ($1, $2, $3, $4, $5) RETURNING *)
		SELECT ` + instanceCols + ` FROM i JOIN accounts a ON a.id = i.account_id`
	var out Instance
	err := sqlx.GetContext(ctx, db, &out, q, id, accountID, subdomain, status, region)
	return out, mapErr(err)
}

// GetInstance reads one live instance of an account; a deleted one, like
// another account's, is ErrNotFound.
func GetInstance(ctx context.Context, db sqlx.ExtContext, accountID, instanceID string) (Instance, error) {
	const q = `SELECT ` + instanceCols + ` FROM instances i JOIN accounts a ON a.id = i.account_id
		WHERE i.id = $1 AND i.account_id = $2 AND i.status <> 'deleted'`
	var out Instance
	err := sqlx.GetContext(ctx, db, &out, q, instanceID, accountID)
	return out, mapErr(err)
}

// lockInstance reads the instance $1 of account $2 and locks its row: for
// LockInstance, and as the first CTE of the statements that lock the
// instance before an operation (StartShowingOperation, FinishOperation),
// the order every writer follows.
const lockInstance = `SELECT ` + instanceCols + lockedInstance

// lockedInstance is lockInstance's FROM clause and lock.
const lockedInstance = ` FROM instances i JOIN accounts a ON a.id = i.account_id
	WHERE i.id = $1 AND i.account_id = $2 FOR NO KEY UPDATE OF i`

// LockInstance reads an instance of an account, deleted ones included, and
// locks its row until the transaction ends: every change of an instance's
// status and every new operation on it goes through this lock.
func LockInstance(ctx context.Context, tx sqlx.ExtContext, accountID, instanceID string) (Instance, error) {
	var out Instance
	err := sqlx.GetContext(ctx, tx, &out, lockInstance, instanceID, accountID)
	return out, mapErr(err)
}

// InstanceByID reads an instance whatever its account: for the worker,
// which acts on ids it read from Postgres itself.
func InstanceByID(ctx context.Context, db sqlx.ExtContext, instanceID string) (Instance, error) {
	const q = `SELECT ` + instanceCols + ` FROM instances i JOIN accounts a ON a.id = i.account_id WHERE i.id = $1`
	var out Instance
	err := sqlx.GetContext(ctx, db, &out, q, instanceID)
	return out, mapErr(err)
}

// instanceShownCols are the columns that an instance's public object
// (wire.Instance) shows, with account_id: what a list of instances, which
// dashboards poll, asks for, every other column left zero.
const instanceShownCols = `i.id, i.account_id, i.subdomain, i.status, a.plan, i.fly_region,
	i.created_at, i.updated_at, i.version, i.volume_gb`

// shownFields are the destinations of a row of instanceShownCols, in its
// order (TestInstanceFieldsFollowCols). Scanned by hand, not through
// sqlx's reflection, as the api's reads of operations are.
func (inst *Instance) shownFields() []any {
	return []any{&inst.ID, &inst.AccountID, &inst.Subdomain, &inst.Status, &inst.Plan, &inst.FlyRegion,
		&inst.CreatedAt, &inst.UpdatedAt, &inst.Version, &inst.VolumeGB}
}

// ListInstances returns an account's live instances, oldest first: the
// columns their public objects show (instanceShownCols).
func ListInstances(ctx context.Context, db sqlx.ExtContext, accountID string) ([]Instance, error) {
	const q = `SELECT ` + instanceShownCols + ` FROM instances i JOIN accounts a ON a.id = i.account_id
		WHERE i.account_id = $1 AND i.status <> 'deleted' ORDER BY i.created_at, i.id`
	out, err := selectRows(ctx, db, (*Instance).shownFields, q, accountID)
	return out, mapErr(err)
}

// LockAccountForQuota locks the account row until the transaction ends and
// counts its live instances. Creates of one account thus queue on this lock,
// and each sees the count its predecessors committed: the quota holds under
// any concurrency.
func LockAccountForQuota(ctx context.Context, tx sqlx.ExtContext, accountID string) (live int, err error) {
	const lock = `SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE`
	var got string
	if err := sqlx.GetContext(ctx, tx, &got, lock, accountID); err != nil {
		return 0, mapErr(err)
	}
	return CountLiveInstances(ctx, tx, accountID)
}

// CountLiveInstances counts the instances that hold quota: every one not
// yet deleted.
func CountLiveInstances(ctx context.Context, db sqlx.ExtContext, accountID string) (int, error) {
	const q = `SELECT count(*) FROM instances WHERE account_id = $1 AND status <> 'deleted'`
	var n int
	err := sqlx.GetContext(ctx, db, &n, q, accountID)
	return n, mapErr(err)
}

// setStatus is the SET clause of a status change: a deleted instance also
// gets its deleted_at.
const setStatus = `SET status = $2, updated_at = now(),
			deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE deleted_at END`

// WithStatus is the instance as a status change at at (setStatus, with
// now() = at) leaves it.
func (inst Instance) WithStatus(status string, at time.Time) Instance {
	inst.Status, inst.UpdatedAt = status, at
	if status == StatusDeleted {
		inst.DeletedAt = &at
	}
	return inst
}

// ChangeInstanceStatus moves the instance the caller has locked (inst, as
// it read it) to status and records the change's event row, caused by
// operation opID (empty for drift): one round trip for the update and the
// insert. It answers the instance as it now is and the event.
func ChangeInstanceStatus(ctx context.Context, db sqlx.ExtContext, inst Instance, status, opID string) (Instance, InstanceEvent, error) {
	const q = `WITH i AS (UPDATE instances ` + setStatus + ` WHERE id = $1 RETURNING *),
		ev AS (INSERT INTO instance_events (id, account_id, instance_id, operation_id, from_status, to_status)
			SELECT $3, i.account_id, i.id, NULLIF($4, ''), NULLIF($5, ''), $2 FROM i
			RETURNING seq, created_at)
		SELECT ` + instanceCols + `, ev.seq AS event_seq, ev.created_at AS event_created_at
		FROM i JOIN accounts a ON a.id = i.account_id, ev`
	var out struct {
		Instance
		EventSeq       int64     `db:"event_seq"`
		EventCreatedAt time.Time `db:"event_created_at"`
	}
	evID := id.New(id.Event)
	if err := sqlx.GetContext(ctx, db, &out, q, inst.ID, status, evID, opID, inst.Status); err != nil {
		return Instance{}, InstanceEvent{}, mapErr(err)
	}
	ev := InstanceEvent{
		Seq: out.EventSeq, ID: evID, AccountID: out.AccountID, InstanceID: out.ID,
		ToStatus: status, CreatedAt: out.EventCreatedAt.UTC(),
	}
	if opID != "" {
		ev.OperationID = &opID
	}
	if inst.Status != "" {
		from := inst.Status
		ev.FromStatus = &from
	}
	return out.Instance, ev, nil
}

// SetInstanceFly records the Fly app and machine of an instance; the worker
// calls it the moment either exists, so that a crash never loses one. An
// empty machineID clears it (the machine is gone).
func SetInstanceFly(ctx context.Context, db sqlx.ExtContext, instanceID, app, machineID string) error {
	const q = `UPDATE instances SET fly_app = NULLIF($2, ''), fly_machine_id = NULLIF($3, ''), updated_at = now()
		WHERE id = $1`
	return execOne(ctx, db, q, instanceID, app, machineID)
}

// SettledInstances lists up to limit instances that the reconciler may
// compare with their machines: running or stopped, with a machine, and no
// operation under way. after pages by id.
func SettledInstances(ctx context.Context, db sqlx.ExtContext, after string, limit int) ([]Instance, error) {
	const q = `SELECT ` + instanceCols + ` FROM instances i JOIN accounts a ON a.id = i.account_id
		WHERE i.status IN ('running', 'stopped') AND i.fly_machine_id IS NOT NULL AND i.id > $1
			AND NOT EXISTS (SELECT 1 FROM operations o
				WHERE o.instance_id = i.id AND o.status IN ('pending', 'running'))
		ORDER BY i.id LIMIT $2`
	out := []Instance{}
	err := sqlx.SelectContext(ctx, db, &out, q, after, limit)
	return out, mapErr(err)
}

// InstanceExists reports whether the account has the instance, deleted or
// not: its events stay readable after it is deleted.
func InstanceExists(ctx context.Context, db sqlx.ExtContext, accountID, instanceID string) (bool, error) {
	const q = `SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1 AND account_id = $2)`
	var ok bool
	err := sqlx.GetContext(ctx, db, &ok, q, instanceID, accountID)
	return ok, mapErr(err)
}

// LiveInstanceIDs answers the ids of every instance that is not deleted,
// whatever its status: the instances that may own a Fly app (the orphan
// sweep destroys any app none of them owns).
func LiveInstanceIDs(ctx context.Context, db sqlx.ExtContext) ([]string, error) {
	const q = `SELECT id FROM instances WHERE status <> 'deleted'`
	out := []string{}
	err := sqlx.SelectContext(ctx, db, &out, q)
	return out, mapErr(err)
}
