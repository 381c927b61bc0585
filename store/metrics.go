package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// InstanceMetric is one live instance as the customer metrics feed shows
// it: its status, the seconds it ran since since, and its last finished
// operation.
type InstanceMetric struct {
	ID             string   `db:"id"`
	Subdomain      string   `db:"subdomain"`
	Region         string   `db:"fly_region"`
	Status         string   `db:"status"`
	RunningSeconds float64  `db:"running_seconds"`
	LastOpType     *string  `db:"last_op_type"`
	LastOpStatus   *string  `db:"last_op_status"`
	LastOpSeconds  *float64 `db:"last_op_seconds"`
}

// InstanceMetrics answers every live (not deleted) instance of the account
// with the figures of the metrics feed, in ONE statement, so that a
// scrape every 15 s costs one round trip whatever the account holds: the
// running time since since (a UTC month start) until now, computed from
// instance_events as RunningByDay does, and the last finished operation
// with its start-to-finish duration. The rows also count the instances
// against the quota (the quota counts every instance not deleted).
func InstanceMetrics(ctx context.Context, db sqlx.ExtContext, accountID string, since, now time.Time) ([]InstanceMetric, error) {
	const q = `SELECT i.id, i.subdomain, i.fly_region, i.status,
			COALESCE(run.seconds, 0)::float8 AS running_seconds,
			lo.type AS last_op_type, lo.status AS last_op_status,
			extract(epoch FROM lo.finished_at - lo.started_at)::float8 AS last_op_seconds
		FROM instances i
		LEFT JOIN LATERAL (
			SELECT sum(extract(epoch FROM least(s.until, $3::timestamptz) - greatest(s.since, $2::timestamptz))) AS seconds
			FROM (
				SELECT e.to_status, e.created_at AS since,
					COALESCE(lead(e.created_at) OVER (ORDER BY e.created_at, e.seq), $3::timestamptz) AS until
				FROM (
					(SELECT to_status, created_at, seq FROM instance_events
						WHERE instance_id = i.id AND created_at < $2
						ORDER BY created_at DESC, seq DESC LIMIT 1)
					UNION ALL
					(SELECT to_status, created_at, seq FROM instance_events
						WHERE instance_id = i.id AND created_at >= $2 AND created_at < $3)
				) e
			) s
			WHERE s.to_status = 'running' AND s.until > s.since
		) run ON true
		LEFT JOIN LATERAL (
			SELECT o.type, o.status, o.started_at, o.finished_at FROM operations o
			WHERE o.instance_id = i.id AND o.finished_at IS NOT NULL
			ORDER BY o.seq DESC LIMIT 1
		) lo ON true
		WHERE i.account_id = $1 AND i.status <> 'deleted'
		ORDER BY i.created_at, i.id`
	out := []InstanceMetric{}
	if err := sqlx.SelectContext(ctx, db, &out, q, accountID, since.UTC(), now.UTC()); err != nil {
		return nil, fmt.Errorf("instance metrics: %w", mapErr(err))
	}
	return out, nil
}
