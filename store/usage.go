package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// DateLayout is how usage days are written: a UTC calendar date.
const DateLayout = "2006-01-02"

// RequestCount is a number of API requests one key made on one UTC day.
type RequestCount struct {
	AccountID string
	KeyID     string
	Day       string // DateLayout
	Requests  int64
}

// AddRequestCounts adds counts to usage_requests in one statement. The api
// counts requests in memory and flushes them every few seconds, so no
// request waits on this write. Rows are written in primary-key order, so
// two api processes flushing the same keys at once cannot deadlock.
func AddRequestCounts(ctx context.Context, db sqlx.ExtContext, counts []RequestCount) error {
	if len(counts) == 0 {
		return nil
	}
	sorted := append([]RequestCount(nil), counts...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.AccountID != b.AccountID {
			return a.AccountID < b.AccountID
		}
		if a.Day != b.Day {
			return a.Day < b.Day
		}
		return a.KeyID < b.KeyID
	})
	// One statement may not upsert a row twice: merge duplicates first.
	var accounts, keys, days []string
	var n []int64
	for i, c := range sorted {
		if i > 0 && c.AccountID == sorted[i-1].AccountID && c.Day == sorted[i-1].Day && c.KeyID == sorted[i-1].KeyID {
			n[len(n)-1] += c.Requests
			continue
		}
		accounts, keys, days, n = append(accounts, c.AccountID), append(keys, c.KeyID), append(days, c.Day), append(n, c.Requests)
	}
	// WITH ORDINALITY + ORDER BY keeps the sorted order into the insert.
	// A key whose account was deleted meanwhile is skipped by the join
	// rather than failing the whole flush on the foreign key.
	const q = `INSERT INTO usage_requests AS u (account_id, key_id, day, requests)
		SELECT c.account_id, c.key_id, c.day, c.requests
		FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[]) WITH ORDINALITY
			AS c(account_id, key_id, day, requests, ord)
		JOIN accounts a ON a.id = c.account_id
		ORDER BY c.ord
		ON CONFLICT (account_id, day, key_id) DO UPDATE SET requests = u.requests + EXCLUDED.requests`
	_, err := db.ExecContext(ctx, q, pq.Array(accounts), pq.Array(keys), pq.Array(days), pq.Array(n))
	if err != nil {
		return fmt.Errorf("add request counts: %w", mapErr(err))
	}
	return nil
}

// KeyRequests is the number of requests one key made on one day.
type KeyRequests struct {
	Day      string `db:"day"` // DateLayout
	KeyID    string `db:"key_id"`
	KeyName  string `db:"key_name"`
	Requests int64  `db:"requests"`
}

// RequestsByDay returns an account's request counts per key and day for the
// days from through to (DateLayout, both inclusive), ordered by day and key.
func RequestsByDay(ctx context.Context, db sqlx.ExtContext, accountID, from, to string) ([]KeyRequests, error) {
	// Revoked keys keep their row, so their name is still known; a key
	// deleted with its account leaves no usage to show.
	const q = `SELECT to_char(u.day, 'YYYY-MM-DD') AS day, u.key_id, COALESCE(k.name, '') AS key_name, u.requests
		FROM usage_requests u LEFT JOIN api_keys k ON k.id = u.key_id
		WHERE u.account_id = $1 AND u.day BETWEEN $2::date AND $3::date
		ORDER BY u.day, u.key_id`
	out := []KeyRequests{}
	err := sqlx.SelectContext(ctx, db, &out, q, accountID, from, to)
	return out, mapErr(err)
}

// InstanceRunning is how long one instance was running on one day.
type InstanceRunning struct {
	Day        string  `db:"day"` // DateLayout
	InstanceID string  `db:"instance_id"`
	Seconds    float64 `db:"seconds"`
}

// RunningByDay returns, for each UTC day from start (a UTC midnight) for
// days days and each instance of the account, the seconds the instance
// spent in status running, ordered by day and instance. Days and instances
// with none are left out.
//
// The time comes from instance_events: each event opens a span in its
// to_status that lasts until the instance's next event, or until now for
// its latest one. Spans in "running" are intersected with each day, so a
// span across midnight is split exactly at it. Only the last event before
// the range and the events inside it are read, so the cost follows the
// range, not the instance's whole history. now is a parameter rather than
// the database clock so that tests can pin it.
func RunningByDay(ctx context.Context, db sqlx.ExtContext, accountID string, start time.Time, days int, now time.Time) ([]InstanceRunning, error) {
	// Day boundaries are start + n × 24 hours, never "+ 1 day": that is
	// 23 or 25 hours across a daylight-saving change in the session's
	// time zone, and usage days are UTC.
	const q = `WITH bounds AS (
			SELECT $2::timestamptz AS lo, $2::timestamptz + make_interval(hours => 24 * $3) AS hi
		), ev AS (
			SELECT e.instance_id, e.to_status, e.created_at, e.seq
			FROM instances i CROSS JOIN bounds b
			CROSS JOIN LATERAL (
				(SELECT instance_id, to_status, created_at, seq FROM instance_events
					WHERE instance_id = i.id AND created_at < b.lo
					ORDER BY created_at DESC, seq DESC LIMIT 1)
				UNION ALL
				(SELECT instance_id, to_status, created_at, seq FROM instance_events
					WHERE instance_id = i.id AND created_at >= b.lo AND created_at < b.hi)
			) e
			WHERE i.account_id = $1 AND i.created_at < b.hi
				AND (i.deleted_at IS NULL OR i.deleted_at >= b.lo)
		), spans AS (
			SELECT instance_id, to_status, created_at AS since,
				COALESCE(lead(created_at) OVER (PARTITION BY instance_id ORDER BY created_at, seq), $4::timestamptz) AS until
			FROM ev
		), days AS (
			SELECT b.lo + make_interval(hours => 24 * n) AS day_start,
				b.lo + make_interval(hours => 24 * (n + 1)) AS day_end
			FROM bounds b, generate_series(0, $3 - 1) AS n
		)
		SELECT to_char(d.day_start AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, s.instance_id,
			sum(extract(epoch FROM least(s.until, d.day_end) - greatest(s.since, d.day_start)))::float8 AS seconds
		FROM spans s JOIN days d ON s.since < d.day_end AND s.until > d.day_start
		WHERE s.to_status = 'running' AND s.until > s.since
		GROUP BY d.day_start, s.instance_id
		ORDER BY d.day_start, s.instance_id`
	out := []InstanceRunning{}
	err := sqlx.SelectContext(ctx, db, &out, q, accountID, start.UTC(), days, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("instance running time: %w", mapErr(err))
	}
	return out, nil
}
