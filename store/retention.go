package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Retention deletes old rows in batches: each statement deletes at most
// batch rows found through an index and commits on its own, so it holds
// row locks on those rows only, for milliseconds; readers and writers of
// the table never wait on it (a DELETE takes no lock that blocks SELECT,
// INSERT or UPDATE of other rows). SKIP LOCKED lets two worker processes
// prune at once without waiting on each other's batches. Callers loop
// until a batch comes back smaller than batch.

// PruneAudit deletes up to batch audit entries created before cutoff and
// returns how many.
func PruneAudit(ctx context.Context, db sqlx.ExtContext, cutoff time.Time, batch int) (int, error) {
	const q = `DELETE FROM audit_log WHERE seq IN (
		SELECT seq FROM audit_log WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`
	return prune(ctx, db, "audit entries", q, cutoff, batch)
}

// PruneOperations deletes up to batch operations that finished before
// cutoff and returns how many. Unfinished operations are never pruned,
// however old: the relay still owes them an outcome.
func PruneOperations(ctx context.Context, db sqlx.ExtContext, cutoff time.Time, batch int) (int, error) {
	const q = `DELETE FROM operations WHERE seq IN (
		SELECT seq FROM operations
		WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1
		LIMIT $2 FOR UPDATE SKIP LOCKED)`
	return prune(ctx, db, "operations", q, cutoff, batch)
}

// PruneWebhookDeliveries deletes up to batch webhook deliveries that
// finished (succeeded, or failed for good) before cutoff, with their
// attempts, and returns how many. Pending ones are kept: they may still be
// retried.
func PruneWebhookDeliveries(ctx context.Context, db sqlx.ExtContext, cutoff time.Time, batch int) (int, error) {
	const q = `DELETE FROM webhook_deliveries WHERE seq IN (
		SELECT seq FROM webhook_deliveries
		WHERE status <> 'pending' AND finished_at < $1
		LIMIT $2 FOR UPDATE SKIP LOCKED)`
	return prune(ctx, db, "webhook deliveries", q, cutoff, batch)
}

func prune(ctx context.Context, db sqlx.ExtContext, what, q string, cutoff time.Time, batch int) (int, error) {
	res, err := db.ExecContext(ctx, q, cutoff, batch)
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", what, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", what, err)
	}
	return int(n), nil
}
