package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/telemetry"
)

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// DeliveryStatuses lists every delivery status, for validating filters.
var DeliveryStatuses = []string{DeliveryPending, DeliverySucceeded, DeliveryFailed}

// WebhookEndpoint is a webhook_endpoints row. SecretSealed is the signing
// secret sealed with the server's key; only the worker opens it.
type WebhookEndpoint struct {
	ID             string         `db:"id"`
	AccountID      string         `db:"account_id"`
	URL            string         `db:"url"`
	Events         pq.StringArray `db:"events"`
	Enabled        bool           `db:"enabled"`
	DisabledReason *string        `db:"disabled_reason"`
	SecretSealed   []byte         `db:"secret_sealed"`
	CreatedAt      time.Time      `db:"created_at"`
	UpdatedAt      time.Time      `db:"updated_at"`
}

const endpointCols = `id, account_id, url, events, enabled, disabled_reason, secret_sealed, created_at, updated_at`

// InsertWebhookEndpoint stores a new, enabled endpoint.
func InsertWebhookEndpoint(ctx context.Context, db sqlx.ExtContext, e WebhookEndpoint) (WebhookEndpoint, error) {
	const q = `INSERT INTO webhook_endpoints (id, account_id, url, events, secret_sealed)
		VALUES ($1, $2, $3, $4, $5) RETURNING ` + endpointCols
	var out WebhookEndpoint
	err := sqlx.GetContext(ctx, db, &out, q, e.ID, e.AccountID, e.URL, e.Events, e.SecretSealed)
	return out, mapErr(err)
}

// LockAccountWebhooks locks the account's row for the rest of the
// transaction and counts its endpoints, so that concurrent creates cannot
// together pass the per-account limit.
func LockAccountWebhooks(ctx context.Context, tx sqlx.ExtContext, accountID string) (int, error) {
	const lock = `SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE`
	var got string
	if err := sqlx.GetContext(ctx, tx, &got, lock, accountID); err != nil {
		return 0, mapErr(err)
	}
	const q = `SELECT count(*) FROM webhook_endpoints WHERE account_id = $1`
	var n int
	err := sqlx.GetContext(ctx, tx, &n, q, accountID)
	return n, mapErr(err)
}

// ListWebhookEndpoints returns the account's endpoints, oldest first.
func ListWebhookEndpoints(ctx context.Context, db sqlx.ExtContext, accountID string) ([]WebhookEndpoint, error) {
	const q = `SELECT ` + endpointCols + ` FROM webhook_endpoints WHERE account_id = $1 ORDER BY created_at, id`
	out := []WebhookEndpoint{}
	err := sqlx.SelectContext(ctx, db, &out, q, accountID)
	return out, mapErr(err)
}

// GetWebhookEndpoint reads one endpoint of an account.
func GetWebhookEndpoint(ctx context.Context, db sqlx.ExtContext, accountID, endpointID string) (WebhookEndpoint, error) {
	const q = `SELECT ` + endpointCols + ` FROM webhook_endpoints WHERE id = $1 AND account_id = $2`
	var out WebhookEndpoint
	err := sqlx.GetContext(ctx, db, &out, q, endpointID, accountID)
	return out, mapErr(err)
}

// WebhookEndpointUpdate lists the fields to change; nil leaves a field as
// it is.
type WebhookEndpointUpdate struct {
	URL    *string
	Events []string
	// Enabled true clears the disabled reason; false on an enabled
	// endpoint sets DisabledReason (a disabled one keeps its reason).
	Enabled        *bool
	DisabledReason string
}

// UpdateWebhookEndpoint changes an endpoint of an account and answers it as
// it now is.
func UpdateWebhookEndpoint(ctx context.Context, db sqlx.ExtContext, accountID, endpointID string, u WebhookEndpointUpdate) (WebhookEndpoint, error) {
	const q = `UPDATE webhook_endpoints SET
			url = COALESCE($3, url),
			events = COALESCE($4, events),
			enabled = COALESCE($5, enabled),
			disabled_reason = CASE WHEN $5::boolean IS NULL THEN disabled_reason
				WHEN $5::boolean THEN NULL WHEN enabled THEN $6 ELSE disabled_reason END,
			updated_at = now()
		WHERE id = $1 AND account_id = $2 RETURNING ` + endpointCols
	var events any
	if u.Events != nil {
		events = pq.StringArray(u.Events)
	}
	var out WebhookEndpoint
	err := sqlx.GetContext(ctx, db, &out, q, endpointID, accountID, u.URL, events, u.Enabled, u.DisabledReason)
	return out, mapErr(err)
}

// DeleteWebhookEndpoint removes an endpoint of an account with its
// deliveries and their attempts.
func DeleteWebhookEndpoint(ctx context.Context, db sqlx.ExtContext, accountID, endpointID string) error {
	const q = `DELETE FROM webhook_endpoints WHERE id = $1 AND account_id = $2`
	return execOne(ctx, db, q, endpointID, accountID)
}

// DisableWebhookEndpoint turns an endpoint off for the worker (a receiver
// that answered 410 Gone), whatever its account.
func DisableWebhookEndpoint(ctx context.Context, db sqlx.ExtContext, endpointID, reason string) error {
	const q = `UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now() WHERE id = $1`
	_, err := db.ExecContext(ctx, q, endpointID, reason)
	return mapErr(err)
}

// QueuedEvent is one event for QueueWebhookEvents: its id, its type and
// Payload, the envelope receivers get.
type QueuedEvent struct {
	ID, Type string
	Payload  []byte
}

// QueueWebhookEvents records events in the account's feed (GET /events),
// in the order given, and writes one pending delivery of each to every
// enabled endpoint of the account subscribed to its type, returning their
// ids in the same order. It is the webhook outbox: callers pass the
// transaction of the change the events report, so an event exists exactly
// when its change does; the worker's relay picks the deliveries up even if
// enqueueing them fails.
//
// Before drawing the feed's seqs it takes a per-account transaction lock,
// held until the commit: one account's event-writing transactions then
// commit in seq order, so a reader that sees seq N has already been able to
// see every earlier event of the account, and a cursor never skips one
// (GET /events/stream resumes without gaps). Different accounts never wait
// on each other. One statement, one round trip, however many events (an
// operation's finish reports two: the instance's status and the operation).
func QueueWebhookEvents(ctx context.Context, db sqlx.ExtContext, accountID string, events ...QueuedEvent) ([]string, error) {
	const q = `WITH ordered AS (SELECT pg_advisory_xact_lock($5)), ` + queueEvents + insertDeliveries
	out := []string{}
	err := sqlx.SelectContext(ctx, db, &out, q, queuedEventsArgs(ctx, accountID, events)...)
	return out, mapErr(err)
}

// queueEvents are QueueWebhookEvents' CTEs: ev, the events ($1 ids, $2
// types, $3 payloads) in order, and feed, their rows in the feed of
// account $4, inserted once the CTE ordered has taken the feed's lock.
// insertDeliveries then writes their deliveries ($6 the delivery ids'
// prefix, $7 the traceparent). Every statement that queues events
// shares them, with the arguments queuedEventsArgs answers.
const (
	queueEvents = `ev AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS ev(id, type, payload, n)),
		feed AS (INSERT INTO events (id, account_id, type, payload)
			SELECT ev.id, $4, ev.type, ev.payload FROM ev, ordered ORDER BY ev.n RETURNING id)`
	insertDeliveries = `
		INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, payload, traceparent)
		SELECT $6 || ev.id || '_' || e.id, e.id, e.account_id, ev.id, ev.type, ev.payload, $7
		FROM ev JOIN feed ON feed.id = ev.id, webhook_endpoints e
		WHERE e.account_id = $4 AND e.enabled AND ev.type = ANY (e.events)
		ORDER BY ev.n, e.id
		RETURNING id`
)

// queuedEventsArgs are the arguments $1 to $7 of queueEvents and
// insertDeliveries ($5: the account's feed lock).
func queuedEventsArgs(ctx context.Context, accountID string, events []QueuedEvent) []any {
	ids, types, payloads := make([]string, len(events)), make([]string, len(events)), make([][]byte, len(events))
	for i, e := range events {
		ids[i], types[i], payloads[i] = e.ID, e.Type, e.Payload
	}
	return []any{pq.Array(ids), pq.Array(types), pq.Array(payloads), accountID,
		feedLockKey(accountID), id.Delivery + "_", telemetry.Traceparent(ctx)}
}

// QueueWebhookEvent is QueueWebhookEvents of one event.
func QueueWebhookEvent(ctx context.Context, db sqlx.ExtContext, accountID, eventID, eventType string, payload []byte) ([]string, error) {
	return QueueWebhookEvents(ctx, db, accountID, QueuedEvent{ID: eventID, Type: eventType, Payload: payload})
}

// QueueWebhookEventTo writes one pending delivery of an event to one
// endpoint of the account, whatever events it subscribes to: the delivery
// of POST /webhooks/:id/test.
func QueueWebhookEventTo(ctx context.Context, db sqlx.ExtContext, accountID, endpointID, eventID, eventType string, payload []byte) (WebhookDelivery, error) {
	const q = `INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, event_type, payload, traceparent)
		SELECT $1 || '_' || e.id, e.id, e.account_id, $2, $3, $4, $7
		FROM webhook_endpoints e WHERE e.id = $5 AND e.account_id = $6
		RETURNING ` + deliveryCols
	var out WebhookDelivery
	err := sqlx.GetContext(ctx, db, &out, q, id.Delivery+"_"+eventID, eventID, eventType, payload, endpointID, accountID,
		telemetry.Traceparent(ctx))
	return out, mapErr(err)
}

// WebhookDelivery is a webhook_deliveries row: one event for one endpoint.
// Its id is the webhook-id header of every attempt.
type WebhookDelivery struct {
	Seq            int64      `db:"seq"`
	ID             string     `db:"id"`
	EndpointID     string     `db:"endpoint_id"`
	AccountID      string     `db:"account_id"`
	EventID        string     `db:"event_id"`
	EventType      string     `db:"event_type"`
	Payload        []byte     `db:"payload"`
	Status         string     `db:"status"`
	Attempts       int        `db:"attempts"`
	NextAttemptAt  time.Time  `db:"next_attempt_at"`
	LastStatusCode *int       `db:"last_status_code"`
	FailureReason  *string    `db:"failure_reason"`
	EnqueuedAt     *time.Time `db:"enqueued_at"`
	CreatedAt      time.Time  `db:"created_at"`
	FinishedAt     *time.Time `db:"finished_at"`
}

const deliveryCols = `seq, id, endpoint_id, account_id, event_id, event_type, payload, status, attempts,
	next_attempt_at, last_status_code, failure_reason, enqueued_at, created_at, finished_at`

// ListWebhookDeliveries returns up to limit deliveries of an account's
// endpoint, newest first, with seq below before (0: from the newest),
// optionally in one status.
func ListWebhookDeliveries(ctx context.Context, db sqlx.ExtContext, accountID, endpointID, status string, before int64, limit int) ([]WebhookDelivery, error) {
	const q = `SELECT ` + deliveryCols + ` FROM webhook_deliveries
		WHERE endpoint_id = $1 AND account_id = $2
			AND ($3::text = '' OR status = $3::text)
			AND ($4::bigint = 0 OR seq < $4::bigint)
		ORDER BY seq DESC LIMIT $5`
	out := []WebhookDelivery{}
	err := sqlx.SelectContext(ctx, db, &out, q, endpointID, accountID, status, before, limit)
	return out, mapErr(err)
}

// WebhookDeliveryByID reads a delivery whatever its account, for the worker
// and tests.
func WebhookDeliveryByID(ctx context.Context, db sqlx.ExtContext, deliveryID string) (WebhookDelivery, error) {
	const q = `SELECT ` + deliveryCols + ` FROM webhook_deliveries WHERE id = $1`
	var out WebhookDelivery
	err := sqlx.GetContext(ctx, db, &out, q, deliveryID)
	return out, mapErr(err)
}

// WebhookAttempt is one attempt of a delivery that reached an outcome: an
// answer from the receiver or an error.
type WebhookAttempt struct {
	Seq          int64     `db:"seq"`
	DeliveryID   string    `db:"delivery_id"`
	Attempt      int       `db:"attempt"`
	StatusCode   *int      `db:"status_code"`
	LatencyMS    int       `db:"latency_ms"`
	ResponseBody *string   `db:"response_body"`
	Error        *string   `db:"error"`
	CreatedAt    time.Time `db:"created_at"`
}

// ListWebhookAttempts returns the attempts of the given deliveries, in the
// order they were made.
func ListWebhookAttempts(ctx context.Context, db sqlx.ExtContext, deliveryIDs []string) ([]WebhookAttempt, error) {
	const q = `SELECT seq, delivery_id, attempt, status_code, latency_ms, response_body, error, created_at
		FROM webhook_attempts WHERE delivery_id = ANY ($1) ORDER BY seq`
	out := []WebhookAttempt{}
	if len(deliveryIDs) == 0 {
		return out, nil
	}
	err := sqlx.SelectContext(ctx, db, &out, q, pq.StringArray(deliveryIDs))
	return out, mapErr(err)
}

// DeliveryTarget is what the worker needs to make an attempt: the delivery
// and the endpoint it goes to.
type DeliveryTarget struct {
	WebhookDelivery
	URL            string  `db:"url"`
	Enabled        bool    `db:"enabled"`
	DisabledReason *string `db:"disabled_reason"`
	SecretSealed   []byte  `db:"secret_sealed"`
}

// WebhookDeliveryTarget reads a delivery with its endpoint. ErrNotFound
// means the delivery is gone: its endpoint was deleted.
func WebhookDeliveryTarget(ctx context.Context, db sqlx.ExtContext, deliveryID string) (DeliveryTarget, error) {
	const q = `SELECT d.seq, d.id, d.endpoint_id, d.account_id, d.event_id, d.event_type, d.payload, d.status,
			d.attempts, d.next_attempt_at, d.last_status_code, d.failure_reason, d.enqueued_at, d.created_at,
			d.finished_at, e.url, e.enabled, e.disabled_reason, e.secret_sealed
		FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		WHERE d.id = $1`
	var out DeliveryTarget
	err := sqlx.GetContext(ctx, db, &out, q, deliveryID)
	return out, mapErr(err)
}

// ClaimWebhookAttempt starts attempt number attempt+1 of a pending delivery
// that has made exactly attempt attempts, and holds it for lease: until
// then the relay leaves the delivery alone; after it, the relay assumes
// the worker died and queues the next attempt. ErrNotFound means another
// task claimed this attempt already (a duplicate or stale task).
func ClaimWebhookAttempt(ctx context.Context, db sqlx.ExtContext, deliveryID string, attempt int, lease time.Duration) error {
	const q = `UPDATE webhook_deliveries SET attempts = attempts + 1,
			next_attempt_at = now() + $3::bigint * interval '1 millisecond'
		WHERE id = $1 AND status = 'pending' AND attempts = $2`
	return execOne(ctx, db, q, deliveryID, attempt, lease.Milliseconds())
}

// FailWebhookDelivery ends a pending delivery without a further attempt
// (its endpoint was disabled, say). ErrNotFound: it was not pending.
func FailWebhookDelivery(ctx context.Context, db sqlx.ExtContext, deliveryID, reason string) error {
	const q = `UPDATE webhook_deliveries SET status = 'failed', failure_reason = $2, finished_at = now()
		WHERE id = $1 AND status = 'pending'`
	return execOne(ctx, db, q, deliveryID, reason)
}

// AttemptOutcome is how one attempt ended and what the delivery does next.
type AttemptOutcome struct {
	// Attempt is the attempt's number, from 1: the claimed count.
	Attempt      int
	StatusCode   *int
	Latency      time.Duration
	ResponseBody *string
	Error        *string
	// Status is what the delivery becomes: DeliveryPending (retried at
	// NextAttemptAt), DeliverySucceeded or DeliveryFailed (with
	// FailureReason).
	Status        string
	NextAttemptAt time.Time
	FailureReason *string
}

// RecordWebhookAttempt stores the attempt and moves its delivery on, if the
// delivery is still at that attempt. ErrNotFound: it is not (a later
// attempt took over after this one's lease expired), and nothing changes.
func RecordWebhookAttempt(ctx context.Context, db sqlx.ExtContext, deliveryID string, o AttemptOutcome) error {
	const upd = `UPDATE webhook_deliveries SET status = $3,
			next_attempt_at = CASE WHEN $3 = 'pending' THEN $4 ELSE next_attempt_at END,
			last_status_code = $5, failure_reason = $6,
			finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
		WHERE id = $1 AND attempts = $2 AND status = 'pending'`
	if err := execOne(ctx, db, upd, deliveryID, o.Attempt, o.Status, o.NextAttemptAt, o.StatusCode, o.FailureReason); err != nil {
		return err
	}
	return InsertWebhookAttempt(ctx, db, deliveryID, o.Attempt, o.StatusCode, o.Latency, o.ResponseBody, o.Error)
}

// InsertWebhookAttempt stores one attempt's outcome; a second outcome for
// the same attempt is ignored.
func InsertWebhookAttempt(ctx context.Context, db sqlx.ExtContext, deliveryID string, attempt int, statusCode *int, latency time.Duration, body, errText *string) error {
	const q = `INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, response_body, error)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id, attempt) DO NOTHING`
	_, err := db.ExecContext(ctx, q, deliveryID, attempt, statusCode, latency.Milliseconds(), body, errText)
	return mapErr(err)
}

// DueWebhookDelivery is a pending delivery whose next attempt is overdue.
type DueWebhookDelivery struct {
	ID            string    `db:"id"`
	Attempts      int       `db:"attempts"`
	NextAttemptAt time.Time `db:"next_attempt_at"`
	// Recorded says whether the last attempt started has an outcome; false
	// with Attempts > 0 means its worker stopped during it.
	Recorded bool `db:"recorded"`
	// Traceparent is the trace context of whatever queued the delivery
	// (telemetry.Traceparent), so that an attempt the relay queues again
	// stays in its trace.
	Traceparent *string `db:"traceparent"`
}

// DueWebhookDeliveries lists up to limit pending deliveries whose next
// attempt was due more than grace ago, most overdue first, for the relay.
func DueWebhookDeliveries(ctx context.Context, db sqlx.ExtContext, grace time.Duration, limit int) ([]DueWebhookDelivery, error) {
	const q = `SELECT d.id, d.attempts, d.next_attempt_at, d.traceparent,
			(d.attempts = 0 OR EXISTS (SELECT 1 FROM webhook_attempts a
				WHERE a.delivery_id = d.id AND a.attempt = d.attempts)) AS recorded
		FROM webhook_deliveries d
		WHERE d.status = 'pending' AND d.next_attempt_at < now() - $1::bigint * interval '1 millisecond'
		ORDER BY d.next_attempt_at LIMIT $2`
	out := []DueWebhookDelivery{}
	err := sqlx.SelectContext(ctx, db, &out, q, grace.Milliseconds(), limit)
	return out, mapErr(err)
}

// MarkWebhookEnqueued records that the relay (re)queued the delivery's task.
func MarkWebhookEnqueued(ctx context.Context, db sqlx.ExtContext, deliveryID string) error {
	const q = `UPDATE webhook_deliveries SET enqueued_at = now() WHERE id = $1`
	_, err := db.ExecContext(ctx, q, deliveryID)
	return mapErr(err)
}

// SealedSecret is one secret sealed under MOC_SECRET_KEY: an endpoint's
// signing secret or an instance's secret.
type SealedSecret struct {
	ID     string `db:"id"`
	Sealed []byte `db:"sealed"`
}

// SealedSet is a kind of sealed secret, for re-sealing every one of them
// under a new MOC_SECRET_KEY.
type SealedSet struct {
	Name         string // for logs
	list, reseal string
}

// The sets of sealed secrets. An instance secret's id is
// "<instance id>/<name>" (an instance id holds no "/").
var (
	WebhookSecrets = SealedSet{
		Name:   "webhook signing secrets",
		list:   `SELECT id, secret_sealed AS sealed FROM webhook_endpoints WHERE id > $1 ORDER BY id LIMIT $2`,
		reseal: `UPDATE webhook_endpoints SET secret_sealed = $3 WHERE id = $1 AND secret_sealed = $2`,
	}
	InstanceSecrets = SealedSet{
		Name: "instance secrets",
		list: `SELECT instance_id || '/' || name AS id, sealed FROM instance_secrets
		        WHERE (instance_id, name) > (split_part($1, '/', 1), substr($1, strpos($1, '/') + 1))
		        ORDER BY instance_id, name LIMIT $2`,
		reseal: `UPDATE instance_secrets SET sealed = $3
		          WHERE instance_id = split_part($1, '/', 1) AND name = substr($1, strpos($1, '/') + 1) AND sealed = $2`,
	}
)

// SealedSecrets lists up to limit secrets of set with an id after after,
// by id.
func SealedSecrets(ctx context.Context, db sqlx.ExtContext, set SealedSet, after string, limit int) ([]SealedSecret, error) {
	out := []SealedSecret{}
	err := sqlx.SelectContext(ctx, db, &out, set.list, after, limit)
	return out, mapErr(err)
}

// ResealSecret replaces a sealed secret with the same secret sealed under
// another key, unless it changed meanwhile.
func ResealSecret(ctx context.Context, db sqlx.ExtContext, set SealedSet, id string, old, resealed []byte) error {
	_, err := db.ExecContext(ctx, set.reseal, id, old, resealed)
	return mapErr(err)
}
