package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/telemetry"
)

// SetInstanceRelease records the version an instance runs, its image and
// its volume size: at create (in the accept transaction) and when an
// upgrade has come up healthy. It answers the row as it now is.
func SetInstanceRelease(ctx context.Context, db sqlx.ExtContext, instanceID, version, image string, volumeGB int) (Instance, error) {
	const q = `WITH i AS (
			UPDATE instances SET version = $2, image = $3, volume_gb = $4, updated_at = now()
			WHERE id = $1 RETURNING *)
		SELECT ` + instanceCols + ` FROM i JOIN accounts a ON a.id = i.account_id`
	var out Instance
	err := sqlx.GetContext(ctx, db, &out, q, instanceID, version, image, volumeGB)
	return out, mapErr(err)
}

// SetInstanceVersion records that the instance now runs version on image.
func SetInstanceVersion(ctx context.Context, db sqlx.ExtContext, instanceID, version, image string) error {
	const q = `UPDATE instances SET version = $2, image = $3, updated_at = now() WHERE id = $1`
	return execOne(ctx, db, q, instanceID, version, image)
}

// SetInstanceVolume records the Fly volume of an instance the moment it
// exists, so that a crash never loses it.
func SetInstanceVolume(ctx context.Context, db sqlx.ExtContext, instanceID, volumeID string) error {
	const q = `UPDATE instances SET fly_volume_id = NULLIF($2, ''), updated_at = now() WHERE id = $1`
	return execOne(ctx, db, q, instanceID, volumeID)
}

// InsertTargetOperation is InsertCallOperation for an operation that works
// towards a version and image (an instance.upgrade), without its effects on
// the instance: with the instance's row locked (inst as LockInstance read
// it), it inserts the operation unless a delete of the instance is under
// way, and then returns ErrInstanceDeleting.
func InsertTargetOperation(ctx context.Context, db sqlx.ExtContext, id, accountID string, inst Instance, opType, version, image string) (Operation, error) {
	if err := inst.acceptsOperations(); err != nil {
		return Operation{}, err
	}
	const q = `INSERT INTO operations (id, account_id, instance_id, type, status, version, image, traceparent)
		VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) RETURNING ` + opCols
	out, err := getOperation(ctx, db, q, id, accountID, inst.ID, opType, version, image, telemetry.Traceparent(ctx))
	return out, mapErr(err)
}

// SetOperationFromState records the machine state an operation found
// before it changed anything; a state already recorded is kept, so a
// resumed operation remembers the first. It answers the recorded state.
func SetOperationFromState(ctx context.Context, db sqlx.ExtContext, opID, state string) (string, error) {
	const q = `UPDATE operations SET from_state = COALESCE(from_state, $2) WHERE id = $1 RETURNING from_state`
	var out string
	err := sqlx.GetContext(ctx, db, &out, q, opID, state)
	return out, mapErr(err)
}

// SetOperationLease records the nonce of the Fly lease an operation holds
// (empty clears it).
func SetOperationLease(ctx context.Context, db sqlx.ExtContext, opID, nonce string) error {
	const q = `UPDATE operations SET lease_nonce = NULLIF($2, '') WHERE id = $1`
	return execOne(ctx, db, q, opID, nonce)
}

// SetOperationRollback records that an upgrade is being rolled back, and
// why; the first reason is kept.
func SetOperationRollback(ctx context.Context, db sqlx.ExtContext, opID, reason string) (string, error) {
	const q = `UPDATE operations SET rollback_reason = COALESCE(rollback_reason, $2) WHERE id = $1 RETURNING rollback_reason`
	var out string
	err := sqlx.GetContext(ctx, db, &out, q, opID, reason)
	return out, mapErr(err)
}

// MaxSecretsPerInstance bounds an instance's secrets (API.md: 64).
const MaxSecretsPerInstance = 64

// Secret is an instance_secrets row. Sealed is the value sealed with the
// server's key: only the worker opens it.
type Secret struct {
	InstanceID string    `db:"instance_id"`
	Name       string    `db:"name"`
	Sealed     []byte    `db:"sealed"`
	Digest     string    `db:"digest"`
	CreatedAt  time.Time `db:"created_at"`
	UpdatedAt  time.Time `db:"updated_at"`
}

// ListSecrets answers an instance's secrets sorted by name. The caller has
// checked that the instance belongs to the account.
func ListSecrets(ctx context.Context, db sqlx.ExtContext, instanceID string) ([]Secret, error) {
	const q = `SELECT instance_id, name, sealed, digest, created_at, updated_at FROM instance_secrets
		WHERE instance_id = $1 ORDER BY name`
	out := []Secret{}
	err := sqlx.SelectContext(ctx, db, &out, q, instanceID)
	return out, mapErr(err)
}

// PutSecret inserts or replaces one secret, unless that would give the
// instance more than MaxSecretsPerInstance: then it answers full = true and
// changes nothing. Call it with the instance locked, so that concurrent
// puts cannot both pass the count.
func PutSecret(ctx context.Context, db sqlx.ExtContext, instanceID, name string, sealed []byte, digest string) (full bool, err error) {
	const q = `INSERT INTO instance_secrets (instance_id, name, sealed, digest)
		SELECT $1, $2, $3, $4
		WHERE EXISTS (SELECT 1 FROM instance_secrets WHERE instance_id = $1 AND name = $2)
			OR (SELECT count(*) FROM instance_secrets WHERE instance_id = $1) < $5
		ON CONFLICT (instance_id, name) DO UPDATE
			SET sealed = EXCLUDED.sealed, digest = EXCLUDED.digest, updated_at = now()`
	res, err := db.ExecContext(ctx, q, instanceID, name, sealed, digest, MaxSecretsPerInstance)
	if err != nil {
		return false, mapErr(err)
	}
	n, _ := res.RowsAffected()
	return n == 0, nil
}

// DeleteSecret removes one secret; ErrNotFound if the instance has none of
// that name.
func DeleteSecret(ctx context.Context, db sqlx.ExtContext, instanceID, name string) error {
	const q = `DELETE FROM instance_secrets WHERE instance_id = $1 AND name = $2`
	return execOne(ctx, db, q, instanceID, name)
}

// DeleteInstanceSecrets removes every secret of an instance: its delete has
// succeeded, and no value is kept longer than needed.
func DeleteInstanceSecrets(ctx context.Context, db sqlx.ExtContext, instanceID string) error {
	const q = `DELETE FROM instance_secrets WHERE instance_id = $1`
	_, err := db.ExecContext(ctx, q, instanceID)
	return mapErr(err)
}
