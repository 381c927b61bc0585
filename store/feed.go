package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Channels of the NOTIFYs that migration 00006's triggers send when a
// transaction commits: ChannelOperationFinished carries the id of an
// operation that reached a terminal status, ChannelEvent the account id of
// a new feed event.
const (
	ChannelOperationFinished = "mocd_operation_finished"
	ChannelEvent             = "mocd_event"
)

// FeedEvent is an events row: one event of an account's feed, its payload
// the envelope webhooks deliver ({"type", "timestamp", "data"}).
type FeedEvent struct {
	Seq       int64     `db:"seq"`
	ID        string    `db:"id"`
	AccountID string    `db:"account_id"`
	Type      string    `db:"type"`
	Payload   []byte    `db:"payload"`
	CreatedAt time.Time `db:"created_at"`
}

// feedLockKey is the advisory lock that orders one account's event
// writers (see QueueWebhookEvent).
func feedLockKey(accountID string) int64 {
	h := fnv.New64a()
	h.Write([]byte("mocd/events/" + accountID))
	return int64(h.Sum64())
}

// ErrCursorExpired is a feed position older than retention: events after
// it may have been pruned, so resuming from it could skip some.
var ErrCursorExpired = errors.New("cursor expired")

// ListFeedEvents returns up to limit events of the account with seq above
// after, oldest first, of the given types (all when types is empty). A nil
// after reads from the oldest event kept. It answers ErrCursorExpired when
// retention has pruned events above after.
// The check and the read share one statement, hence one snapshot: a prune
// that commits meanwhile cannot open a gap between them.
func ListFeedEvents(ctx context.Context, db sqlx.ExtContext, accountID string, after *int64, types []string, limit int) ([]FeedEvent, error) {
	const q = `SELECT COALESCE(p.seq, 0) AS horizon, e.seq, e.id, e.account_id, e.type, e.payload, e.created_at
		FROM (SELECT 1) one
		LEFT JOIN events_pruned p ON p.account_id = $1
		LEFT JOIN LATERAL (
			SELECT seq, id, account_id, type, payload, created_at FROM events
			WHERE account_id = $1 AND seq > $2
				AND (COALESCE(cardinality($3::text[]), 0) = 0 OR type = ANY ($3::text[]))
			ORDER BY seq LIMIT $4) e ON true
		ORDER BY e.seq`
	var rows []struct {
		Horizon   int64      `db:"horizon"`
		Seq       *int64     `db:"seq"`
		ID        *string    `db:"id"`
		AccountID *string    `db:"account_id"`
		Type      *string    `db:"type"`
		Payload   []byte     `db:"payload"`
		CreatedAt *time.Time `db:"created_at"`
	}
	var from int64
	if after != nil {
		from = *after
	}
	if err := sqlx.SelectContext(ctx, db, &rows, q, accountID, from, pq.StringArray(types), limit); err != nil {
		return nil, mapErr(err)
	}
	out := make([]FeedEvent, 0, len(rows))
	for _, r := range rows {
		if after != nil && *after < r.Horizon {
			return nil, ErrCursorExpired
		}
		if r.Seq == nil {
			continue // no event: the LEFT JOIN's empty side
		}
		out = append(out, FeedEvent{Seq: *r.Seq, ID: *r.ID, AccountID: *r.AccountID, Type: *r.Type,
			Payload: r.Payload, CreatedAt: r.CreatedAt.UTC()})
	}
	return out, nil
}

// FeedHead is the account's current position at the end of its feed: the
// seq of its newest event, or of the newest retention deleted, whichever
// is later (0 for an empty feed). A stream opened without a cursor starts
// there, so that it carries only what happens from then on.
func FeedHead(ctx context.Context, db sqlx.ExtContext, accountID string) (int64, error) {
	const q = `SELECT GREATEST(
		(SELECT COALESCE(max(seq), 0) FROM events WHERE account_id = $1),
		(SELECT COALESCE(max(seq), 0) FROM events_pruned WHERE account_id = $1))`
	var seq int64
	err := sqlx.GetContext(ctx, db, &seq, q, accountID)
	return seq, mapErr(err)
}

// PruneEvents deletes up to batch feed events created before cutoff and
// returns how many, raising each account's pruned horizon (events_pruned)
// in the same statement so that a cursor below it is known to be expired.
func PruneEvents(ctx context.Context, db sqlx.ExtContext, cutoff time.Time, batch int) (int, error) {
	const q = `WITH gone AS (
			DELETE FROM events WHERE seq IN (
				SELECT seq FROM events WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING account_id, seq),
		horizon AS (
			INSERT INTO events_pruned (account_id, seq)
			SELECT account_id, max(seq) FROM gone GROUP BY account_id
			ON CONFLICT (account_id) DO UPDATE SET seq = GREATEST(events_pruned.seq, EXCLUDED.seq))
		SELECT count(*) FROM gone`
	var n int
	if err := sqlx.GetContext(ctx, db, &n, q, cutoff, batch); err != nil {
		return 0, fmt.Errorf("prune events: %w", mapErr(err))
	}
	return n, nil
}
