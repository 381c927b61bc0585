// Package wire is the one home of mocd's public JSON objects (API.md): what
// the api answers and what webhook payloads carry. store returns rows and
// knows nothing of JSON; each object here is made from its row by a
// constructor that decides field names, URLs, omissions and UTC times.
// It lives under api, which owns the wire, and is the only part of api the
// worker may import: webhook payloads carry the same Instance and
// Operation objects the api answers with.
package wire

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/myopenclaw/mocd/store"
)

// DefaultBaseDomain is the domain an instance's subdomain lives under.
const DefaultBaseDomain = "myopenclaw.ai"

// Instance is the Instance object; the Fly fields and the account stay
// private.
type Instance struct {
	ID        string `json:"id"`
	Subdomain string `json:"subdomain"`
	Status    string `json:"status"`
	Plan      string `json:"plan"`
	FlyRegion string `json:"fly_region"`
	URL       string `json:"url"`
	// Version is the OpenClaw version the instance runs; VolumeGB the size
	// of its persistent data volume.
	Version   string    `json:"version"`
	VolumeGB  int       `json:"volume_gb"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// NewInstance makes the Instance object of row, its URL
// https://<subdomain>.<baseDomain> (DefaultBaseDomain when baseDomain is
// empty).
func NewInstance(row store.Instance, baseDomain string) Instance {
	if baseDomain == "" {
		baseDomain = DefaultBaseDomain
	}
	return Instance{
		ID: row.ID, Subdomain: row.Subdomain, Status: row.Status, Plan: row.Plan, FlyRegion: row.FlyRegion,
		URL:     "https://" + row.Subdomain + "." + baseDomain,
		Version: row.Version, VolumeGB: row.VolumeGB,
		CreatedAt: row.CreatedAt.UTC(), UpdatedAt: row.UpdatedAt.UTC(),
	}
}

// Operation is the Operation object.
type Operation struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Status     string          `json:"status"`
	InstanceID string          `json:"instance_id"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Error      *OperationError `json:"error"`
}

// OperationError is a failed operation's error: null, or a stable code and
// a message a user can act on.
type OperationError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// NewOperation makes the Operation object of row.
func NewOperation(row store.Operation) Operation {
	var opErr *OperationError
	if row.ErrorCode != nil {
		opErr = &OperationError{Code: *row.ErrorCode}
		if row.ErrorMessage != nil {
			opErr.Message = *row.ErrorMessage
		}
	}
	return Operation{
		ID: row.ID, Type: row.Type, Status: row.Status, InstanceID: row.InstanceID,
		CreatedAt: row.CreatedAt.UTC(), StartedAt: utc(row.StartedAt), FinishedAt: utc(row.FinishedAt), Error: opErr,
	}
}

// StatusChanged is the data of an instance.status_changed webhook event.
type StatusChanged struct {
	Instance    Instance `json:"instance"`
	FromStatus  string   `json:"from_status"`
	ToStatus    string   `json:"to_status"`
	OperationID *string  `json:"operation_id"`
}

// InstanceEvent is an item of GET /api/v1/instances/:id/events.
type InstanceEvent struct {
	ID          string    `json:"id"`
	InstanceID  string    `json:"instance_id"`
	OperationID *string   `json:"operation_id"`
	FromStatus  *string   `json:"from_status"`
	ToStatus    string    `json:"to_status"`
	CreatedAt   time.Time `json:"created_at"`
}

// NewInstanceEvent makes the InstanceEvent object of row.
func NewInstanceEvent(row store.InstanceEvent) InstanceEvent {
	return InstanceEvent{
		ID: row.ID, InstanceID: row.InstanceID, OperationID: row.OperationID,
		FromStatus: row.FromStatus, ToStatus: row.ToStatus, CreatedAt: row.CreatedAt.UTC(),
	}
}

// LogEntry is an item of GET /api/v1/logs: one authenticated request that
// changed something.
type LogEntry struct {
	ID          string    `json:"id"`
	CreatedAt   time.Time `json:"created_at"`
	KeyID       string    `json:"key_id"`
	KeyName     string    `json:"key_name"`
	Method      string    `json:"method"`
	Path        string    `json:"path"`
	Status      int       `json:"status"`
	OperationID *string   `json:"operation_id"`
	ClientIP    string    `json:"client_ip"`
	RequestID   string    `json:"request_id"`
}

// NewLogEntry makes the LogEntry object of row.
func NewLogEntry(row store.AuditEntry) LogEntry {
	return LogEntry{
		ID: row.ID, CreatedAt: row.CreatedAt.UTC(), KeyID: row.KeyID, KeyName: row.KeyName,
		Method: row.Method, Path: row.Path, Status: row.Status, OperationID: row.OperationID,
		ClientIP: row.ClientIP, RequestID: row.RequestID,
	}
}

// Key is the Key object: never the secret nor its hash.
type Key struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

// KeyWithToken is the answer to create and rotate: the token, shown once.
type KeyWithToken struct {
	Key
	Token string `json:"token"`
}

// NewKey makes the Key object of row.
func NewKey(row store.Key) Key {
	return Key{
		ID: row.ID, Name: row.Name, Prefix: row.Prefix, Scopes: []string(row.Scopes),
		CreatedAt: row.CreatedAt.UTC(), LastUsedAt: utc(row.LastUsedAt), ExpiresAt: utc(row.ExpiresAt),
	}
}

// Endpoint is the webhook Endpoint object; never the secret, sealed or not.
type Endpoint struct {
	ID             string    `json:"id"`
	URL            string    `json:"url"`
	Events         []string  `json:"events"`
	Enabled        bool      `json:"enabled"`
	DisabledReason *string   `json:"disabled_reason"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// EndpointWithSecret is the answer to create: the secret, shown once.
type EndpointWithSecret struct {
	Endpoint
	Secret string `json:"secret"`
}

// NewEndpoint makes the Endpoint object of row.
func NewEndpoint(row store.WebhookEndpoint) Endpoint {
	return Endpoint{
		ID: row.ID, URL: row.URL, Events: []string(row.Events), Enabled: row.Enabled, DisabledReason: row.DisabledReason,
		CreatedAt: row.CreatedAt.UTC(), UpdatedAt: row.UpdatedAt.UTC(),
	}
}

// Attempt is one recorded attempt of a delivery.
type Attempt struct {
	Attempt      int       `json:"attempt"`
	StatusCode   *int      `json:"status_code"`
	LatencyMS    int       `json:"latency_ms"`
	ResponseBody *string   `json:"response_body"`
	Error        *string   `json:"error"`
	CreatedAt    time.Time `json:"created_at"`
}

// Delivery is the Delivery object: one event sent to one endpoint, with
// every attempt that reached an outcome, oldest first. ID is the
// webhook-id header the receiver saw.
type Delivery struct {
	ID             string          `json:"id"`
	EndpointID     string          `json:"endpoint_id"`
	EventID        string          `json:"event_id"`
	EventType      string          `json:"event_type"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at"`
	LastStatusCode *int            `json:"last_status_code"`
	FailureReason  *string         `json:"failure_reason"`
	CreatedAt      time.Time       `json:"created_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	Payload        json.RawMessage `json:"payload"`
	AttemptLog     []Attempt       `json:"attempt_log"`
}

// NewDelivery makes the Delivery object of row and its attempts.
func NewDelivery(row store.WebhookDelivery, attempts []store.WebhookAttempt) Delivery {
	out := Delivery{
		ID: row.ID, EndpointID: row.EndpointID, EventID: row.EventID, EventType: row.EventType, Status: row.Status,
		Attempts: row.Attempts, LastStatusCode: row.LastStatusCode, FailureReason: row.FailureReason,
		CreatedAt: row.CreatedAt.UTC(), FinishedAt: utc(row.FinishedAt), Payload: json.RawMessage(row.Payload),
		AttemptLog: []Attempt{},
	}
	if !json.Valid(row.Payload) {
		out.Payload = nil
	}
	if row.Status == store.DeliveryPending {
		out.NextAttemptAt = utc(&row.NextAttemptAt)
	}
	for _, a := range attempts {
		out.AttemptLog = append(out.AttemptLog, Attempt{
			Attempt: a.Attempt, StatusCode: a.StatusCode, LatencyMS: a.LatencyMS,
			ResponseBody: a.ResponseBody, Error: a.Error, CreatedAt: a.CreatedAt.UTC(),
		})
	}
	return out
}

// Account is the answer of GET /api/v1/account: what automation checks
// before it creates.
type Account struct {
	ID            string     `json:"id"`
	Email         string     `json:"email"`
	Plan          string     `json:"plan"`
	InstanceLimit int        `json:"instance_limit"`
	InstancesUsed int        `json:"instances_used"`
	RateLimits    RateLimits `json:"rate_limits"`
}

// RateLimits are the plan's request allowances (plan.Limits).
type RateLimits struct {
	KeyPerMinute     int `json:"key_per_minute"`
	KeyPerHour       int `json:"key_per_hour"`
	AccountPerMinute int `json:"account_per_minute"`
}

// Usage is the answer of GET /api/v1/usage.
type Usage struct {
	From   string      `json:"from"`
	To     string      `json:"to"`
	Days   []UsageDay  `json:"days"`
	Totals UsageTotals `json:"totals"`
}

// UsageDay is one UTC day; every day of the range is listed, with empty
// lists when nothing happened, so that charts need no gap filling.
type UsageDay struct {
	Date          string          `json:"date"`
	Requests      []KeyRequests   `json:"requests"`
	InstanceHours []InstanceHours `json:"instance_hours"`
}

// KeyRequests counts one key's requests.
type KeyRequests struct {
	KeyID    string `json:"key_id"`
	KeyName  string `json:"key_name"`
	Requests int64  `json:"requests"`
}

// InstanceHours is how long one instance ran.
type InstanceHours struct {
	InstanceID string  `json:"instance_id"`
	Hours      float64 `json:"hours"`
}

// UsageTotals sums the range, overall and per key and per instance.
type UsageTotals struct {
	Requests      int64           `json:"requests"`
	InstanceHours float64         `json:"instance_hours"`
	ByKey         []KeyRequests   `json:"by_key"`
	ByInstance    []InstanceHours `json:"by_instance"`
}

// FeedEvent is an event of GET /api/v1/events and /events/stream: the
// envelope webhooks deliver ({"type", "timestamp", "data"}), with its evt_
// id in front.
type FeedEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// NewFeedEvent makes the FeedEvent object of row, whose payload is the
// envelope exactly as webhooks deliver it.
func NewFeedEvent(row store.FeedEvent) (FeedEvent, error) {
	var env struct {
		Type      string          `json:"type"`
		Timestamp time.Time       `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(row.Payload, &env); err != nil {
		return FeedEvent{}, fmt.Errorf("event %s: %w", row.ID, err)
	}
	return FeedEvent{ID: row.ID, Type: env.Type, Timestamp: env.Timestamp.UTC(), Data: env.Data}, nil
}

// Page is the cursor-paged list shape.
type Page[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// List makes the objects of rows with newObject; never nil, so that an
// empty list is [] on the wire.
func List[R, T any](rows []R, newObject func(R) T) []T {
	out := make([]T, 0, len(rows))
	for _, r := range rows {
		out = append(out, newObject(r))
	}
	return out
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
