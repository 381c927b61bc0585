package client

import (
	"encoding/json"
	"time"
)

// The types below are the schemas of openapi/openapi.yaml, field for field
// (a test in the server's repository holds them to the document). Nullable
// fields are pointers; enums are string types with a constant per value, and
// a value the SDK does not know yet still decodes.

// InstanceStatus is an instance's state.
type InstanceStatus string

// Instance statuses.
const (
	InstanceCreating   InstanceStatus = "creating"
	InstanceStarting   InstanceStatus = "starting"
	InstanceRunning    InstanceStatus = "running"
	InstanceStopping   InstanceStatus = "stopping"
	InstanceStopped    InstanceStatus = "stopped"
	InstanceRestarting InstanceStatus = "restarting"
	InstanceDeleting   InstanceStatus = "deleting"
	InstanceDeleted    InstanceStatus = "deleted"
	InstanceFailed     InstanceStatus = "failed"
)

// Instance is a hosted OpenClaw assistant.
type Instance struct {
	ID        string         `json:"id"`
	Subdomain string         `json:"subdomain"`
	Status    InstanceStatus `json:"status"`
	Plan      string         `json:"plan"`
	FlyRegion string         `json:"fly_region"`
	URL       string         `json:"url"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// Version is the OpenClaw version the instance runs (ListVersions).
	Version string `json:"version"`
	// VolumeGB is the size of the instance's persistent volume.
	VolumeGB int `json:"volume_gb"`
}

// CreateInstanceRequest is the body of CreateInstance. FlyRegion defaults
// to "iad" on the server, Version to the default of ListVersions.
type CreateInstanceRequest struct {
	Subdomain string `json:"subdomain"`
	FlyRegion string `json:"fly_region,omitempty"`
	Version   string `json:"version,omitempty"`
}

// OpenClawVersion is an OpenClaw release an instance can run (the
// document's Version schema; Version is the SDK's own).
type OpenClawVersion struct {
	Version string `json:"version"`
	// Image is the container image the machine runs.
	Image string `json:"image"`
	// Default reports whether creates without a version get this one.
	Default bool `json:"default"`
	// ReleasedAt is nil when the operator did not say.
	ReleasedAt *time.Time `json:"released_at"`
}

// UpgradeRequest is the body of UpgradeInstance.
type UpgradeRequest struct {
	// Version is one of ListVersions.
	Version string `json:"version"`
}

// Secret is a secret of an instance, without its value.
type Secret struct {
	Name string `json:"name"`
	// Digest is "hmac-sha256:" and a keyed digest of the value: equal
	// values of one account have equal digests.
	Digest    string    `json:"digest"`
	UpdatedAt time.Time `json:"updated_at"`
}

// PutSecretRequest is the body of PutSecret; Value is never answered back.
type PutSecretRequest struct {
	Value string `json:"value"`
}

// OperationType is what an operation does.
type OperationType string

// Operation types.
const (
	OperationCreate  OperationType = "instance.create"
	OperationStart   OperationType = "instance.start"
	OperationStop    OperationType = "instance.stop"
	OperationRestart OperationType = "instance.restart"
	OperationDelete  OperationType = "instance.delete"
	OperationUpgrade OperationType = "instance.upgrade"
	// OperationConfigure applies an instance's secrets (PutSecret,
	// DeleteSecret).
	OperationConfigure OperationType = "instance.configure"
)

// OperationStatus is where an operation is.
type OperationStatus string

// Operation statuses. Succeeded, failed and cancelled are final.
const (
	OperationPending   OperationStatus = "pending"
	OperationRunning   OperationStatus = "running"
	OperationSucceeded OperationStatus = "succeeded"
	OperationFailed    OperationStatus = "failed"
	OperationCancelled OperationStatus = "cancelled"
)

// Operation is one lifecycle call, carried out asynchronously.
type Operation struct {
	ID         string          `json:"id"`
	Type       OperationType   `json:"type"`
	Status     OperationStatus `json:"status"`
	InstanceID string          `json:"instance_id"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Error      *OperationError `json:"error"`
}

// Done reports whether the operation has ended (succeeded, failed or
// cancelled): its status will not change again.
func (o *Operation) Done() bool {
	switch o.Status {
	case OperationSucceeded, OperationFailed, OperationCancelled:
		return true
	}
	return false
}

// OperationError says why an operation failed.
type OperationError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Page is one page of a cursor-paged list. NextCursor is nil on the last
// page; pass it as the Cursor of the next call, or use an AllXxx iterator.
type Page[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// InstanceEvent is one status change of an instance.
type InstanceEvent struct {
	ID          string          `json:"id"`
	InstanceID  string          `json:"instance_id"`
	OperationID *string         `json:"operation_id"`
	FromStatus  *InstanceStatus `json:"from_status"`
	ToStatus    InstanceStatus  `json:"to_status"`
	CreatedAt   time.Time       `json:"created_at"`
}

// Scope is a permission of an API key.
type Scope string

// The 11 scopes.
const (
	ScopeInstanceRead   Scope = "instance:read"
	ScopeInstanceWrite  Scope = "instance:write"
	ScopeInstanceDelete Scope = "instance:delete"
	ScopeOperationsRead Scope = "operations:read"
	ScopeKeysRead       Scope = "keys:read"
	ScopeKeysWrite      Scope = "keys:write"
	ScopeWebhooksRead   Scope = "webhooks:read"
	ScopeWebhooksWrite  Scope = "webhooks:write"
	ScopeLogsRead       Scope = "logs:read"
	ScopeUsageRead      Scope = "usage:read"
	ScopeAccountRead    Scope = "account:read"
)

// ScopePreset names a set of scopes, accepted in CreateKeyRequest.Scopes
// beside scope names.
type ScopePreset string

// Presets of scopes.
const (
	PresetReadOnly ScopePreset = "read-only"
	PresetWrite    ScopePreset = "write"
	PresetFull     ScopePreset = "full"
)

// Key is an API key; never its secret.
type Key struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Scopes     []Scope    `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

// KeyWithToken is a key as CreateKey and RotateKey answer it: Token is the
// full token, shown this once.
type KeyWithToken struct {
	Key
	Token string `json:"token"`
}

// CreateKeyRequest is the body of CreateKey. Scopes are scope names or
// presets ("read-only", "write", "full").
type CreateKeyRequest struct {
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// WebhookEventType is an event a webhook endpoint subscribes to.
type WebhookEventType string

// Webhook event types.
const (
	EventOperationSucceeded    WebhookEventType = "operation.succeeded"
	EventOperationFailed       WebhookEventType = "operation.failed"
	EventOperationCancelled    WebhookEventType = "operation.cancelled"
	EventInstanceStatusChanged WebhookEventType = "instance.status_changed"
	EventWebhookTest           WebhookEventType = "webhook.test"
)

// WebhookEndpoint is a URL that receives signed events.
type WebhookEndpoint struct {
	ID             string             `json:"id"`
	URL            string             `json:"url"`
	Events         []WebhookEventType `json:"events"`
	Enabled        bool               `json:"enabled"`
	DisabledReason *string            `json:"disabled_reason"`
	CreatedAt      time.Time          `json:"created_at"`
	UpdatedAt      time.Time          `json:"updated_at"`
}

// WebhookEndpointWithSecret is an endpoint as CreateWebhook answers it:
// Secret ("whsec_…") is shown this once.
type WebhookEndpointWithSecret struct {
	WebhookEndpoint
	Secret string `json:"secret"`
}

// CreateWebhookRequest is the body of CreateWebhook.
type CreateWebhookRequest struct {
	URL    string             `json:"url"`
	Events []WebhookEventType `json:"events"`
}

// UpdateWebhookRequest is the body of UpdateWebhook: nil fields are left
// as they are.
type UpdateWebhookRequest struct {
	URL     *string            `json:"url,omitempty"`
	Events  []WebhookEventType `json:"events,omitempty"`
	Enabled *bool              `json:"enabled,omitempty"`
}

// DeliveryStatus is where a webhook delivery is.
type DeliveryStatus string

// Delivery statuses.
const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliverySucceeded DeliveryStatus = "succeeded"
	DeliveryFailed    DeliveryStatus = "failed"
)

// WebhookDelivery is one event sent to one endpoint, with every attempt.
type WebhookDelivery struct {
	ID             string           `json:"id"`
	EndpointID     string           `json:"endpoint_id"`
	EventID        string           `json:"event_id"`
	EventType      WebhookEventType `json:"event_type"`
	Status         DeliveryStatus   `json:"status"`
	Attempts       int              `json:"attempts"`
	NextAttemptAt  *time.Time       `json:"next_attempt_at"`
	LastStatusCode *int             `json:"last_status_code"`
	FailureReason  *string          `json:"failure_reason"`
	CreatedAt      time.Time        `json:"created_at"`
	FinishedAt     *time.Time       `json:"finished_at"`
	Payload        *EventEnvelope   `json:"payload"`
	AttemptLog     []WebhookAttempt `json:"attempt_log"`
}

// WebhookAttempt is one attempt of a delivery.
type WebhookAttempt struct {
	Attempt      int       `json:"attempt"`
	StatusCode   *int      `json:"status_code"`
	LatencyMS    int64     `json:"latency_ms"`
	ResponseBody *string   `json:"response_body"`
	Error        *string   `json:"error"`
	CreatedAt    time.Time `json:"created_at"`
}

// EventEnvelope is the body of every webhook delivery. Data depends on
// Type: decode it with OperationEvent, StatusChangedEvent or TestEvent.
type EventEnvelope struct {
	Type      WebhookEventType `json:"type"`
	Timestamp time.Time        `json:"timestamp"`
	Data      json.RawMessage  `json:"data"`
}

// OperationEvent is the body of operation.succeeded, operation.failed and
// operation.cancelled.
type OperationEvent struct {
	Type      WebhookEventType `json:"type"`
	Timestamp time.Time        `json:"timestamp"`
	Data      Operation        `json:"data"`
}

// StatusChangedEvent is the body of instance.status_changed.
type StatusChangedEvent struct {
	Type      WebhookEventType `json:"type"`
	Timestamp time.Time        `json:"timestamp"`
	Data      StatusChange     `json:"data"`
}

// StatusChange is the data of instance.status_changed.
type StatusChange struct {
	Instance    Instance       `json:"instance"`
	FromStatus  InstanceStatus `json:"from_status"`
	ToStatus    InstanceStatus `json:"to_status"`
	OperationID *string        `json:"operation_id"`
}

// TestEvent is the body of webhook.test.
type TestEvent struct {
	Type      WebhookEventType `json:"type"`
	Timestamp time.Time        `json:"timestamp"`
	Data      TestEventData    `json:"data"`
}

// TestEventData is the data of webhook.test.
type TestEventData struct {
	WebhookID string `json:"webhook_id"`
	Message   string `json:"message"`
}

// AuditEntry is one authenticated request that changed something.
type AuditEntry struct {
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

// KeyRequests is the number of API requests one key made.
type KeyRequests struct {
	KeyID    string `json:"key_id"`
	KeyName  string `json:"key_name"`
	Requests int64  `json:"requests"`
}

// InstanceHours is the time one instance spent running.
type InstanceHours struct {
	InstanceID string  `json:"instance_id"`
	Hours      float64 `json:"hours"`
}

// Usage is the usage of a range of UTC days.
type Usage struct {
	From   string      `json:"from"` // YYYY-MM-DD
	To     string      `json:"to"`
	Days   []UsageDay  `json:"days"`
	Totals UsageTotals `json:"totals"`
}

// UsageDay is one UTC day of Usage.
type UsageDay struct {
	Date          string          `json:"date"` // YYYY-MM-DD
	Requests      []KeyRequests   `json:"requests"`
	InstanceHours []InstanceHours `json:"instance_hours"`
}

// UsageTotals sums a Usage's days.
type UsageTotals struct {
	Requests      int64           `json:"requests"`
	InstanceHours float64         `json:"instance_hours"`
	ByKey         []KeyRequests   `json:"by_key"`
	ByInstance    []InstanceHours `json:"by_instance"`
}

// Account is the account's plan, quota and rate limits.
type Account struct {
	ID            string     `json:"id"`
	Email         string     `json:"email"`
	Plan          string     `json:"plan"`
	InstanceLimit int        `json:"instance_limit"`
	InstancesUsed int        `json:"instances_used"`
	RateLimits    RateLimits `json:"rate_limits"`
}

// RateLimits are a plan's request allowances.
type RateLimits struct {
	KeyPerMinute     int `json:"key_per_minute"`
	KeyPerHour       int `json:"key_per_hour"`
	AccountPerMinute int `json:"account_per_minute"`
}

// Readiness is the answer of /readyz.
type Readiness struct {
	Status string          `json:"status"`
	Checks ReadinessChecks `json:"checks"`
}

// ReadinessChecks says which dependency answers.
type ReadinessChecks struct {
	Postgres string `json:"postgres"`
	Redis    string `json:"redis"`
}

// Health is the answer of /healthz.
type Health struct {
	Status string `json:"status"`
}
