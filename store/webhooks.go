package store

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
)

// QueueWebhookEvent writes one pending delivery of an event to every enabled
// endpoint of the account subscribed to its type, and returns their ids. It
// is the webhook outbox: callers pass the transaction of the change the
// event reports, so the event exists exactly when the change does; the
// worker's relay picks the rows up even if enqueueing them fails.
func QueueWebhookEvent(ctx context.Context, db sqlx.ExtContext, accountID, eventID, eventType string, payload []byte) ([]string, error) {
	const q = `INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, payload)
		SELECT $1 || '_' || e.id, e.id, e.account_id, $2, $3, $4
		FROM webhook_endpoints e
		WHERE e.account_id = $5 AND e.enabled AND $3 = ANY (e.events)
		RETURNING id`
	ids := []string{}
	err := sqlx.SelectContext(ctx, db, &ids, q, id.Delivery+"_"+eventID, eventID, eventType, payload, accountID)
	return ids, mapErr(err)
}
