package client

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"time"
)

// One method per route of the OpenAPI document, named after its
// operationId; AllXxx iterators walk the cursor-paged lists.

// ListInstances answers the account's instances, oldest first (deleted ones
// left out). Scope instance:read.
func (c *Client) ListInstances(ctx context.Context) ([]Instance, error) {
	return callSlice[Instance](ctx, c, request{method: http.MethodGet, path: pathOf("instances")})
}

// CreateInstance accepts the creation of an instance and answers its
// operation; follow it with Wait. Scope instance:write.
func (c *Client) CreateInstance(ctx context.Context, req CreateInstanceRequest, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodPost, pathOf("instances"), req, opts)
}

// GetInstance answers one instance. Scope instance:read.
func (c *Client) GetInstance(ctx context.Context, instanceID string) (*Instance, error) {
	return callT[Instance](ctx, c, request{method: http.MethodGet, path: pathOf("instances", instanceID)})
}

// DeleteInstance accepts the deletion of an instance. Scope instance:delete.
func (c *Client) DeleteInstance(ctx context.Context, instanceID string, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodDelete, pathOf("instances", instanceID), nil, opts)
}

// StartInstance accepts a start. Scope instance:write.
func (c *Client) StartInstance(ctx context.Context, instanceID string, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodPost, pathOf("instances", instanceID, "start"), nil, opts)
}

// StopInstance accepts a stop. Scope instance:write.
func (c *Client) StopInstance(ctx context.Context, instanceID string, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodPost, pathOf("instances", instanceID, "stop"), nil, opts)
}

// RestartInstance accepts a restart. Scope instance:write.
func (c *Client) RestartInstance(ctx context.Context, instanceID string, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodPost, pathOf("instances", instanceID, "restart"), nil, opts)
}

// ListInstanceEventsParams page an instance's status changes.
type ListInstanceEventsParams struct {
	Limit  int    `query:"limit"`
	Cursor string `query:"cursor"`
}

// ListInstanceEvents answers one page of an instance's status changes,
// newest first. Scope logs:read.
func (c *Client) ListInstanceEvents(ctx context.Context, instanceID string, p ListInstanceEventsParams) (*Page[InstanceEvent], error) {
	return callT[Page[InstanceEvent]](ctx, c, request{method: http.MethodGet, path: pathOf("instances", instanceID, "events"), query: encodeQuery(p)})
}

// AllInstanceEvents walks every page of ListInstanceEvents.
func (c *Client) AllInstanceEvents(ctx context.Context, instanceID string, p ListInstanceEventsParams) iter.Seq2[InstanceEvent, error] {
	return all(ctx, p.Cursor, func(ctx context.Context, cursor string) (*Page[InstanceEvent], error) {
		p.Cursor = cursor
		return c.ListInstanceEvents(ctx, instanceID, p)
	})
}

// ListOperationsParams filter and page the account's operations.
// CreatedAfter is inclusive, CreatedBefore exclusive.
type ListOperationsParams struct {
	InstanceID    string          `query:"instance_id"`
	Status        OperationStatus `query:"status"`
	Type          OperationType   `query:"type"`
	CreatedAfter  time.Time       `query:"created_after"`
	CreatedBefore time.Time       `query:"created_before"`
	Limit         int             `query:"limit"`
	Cursor        string          `query:"cursor"`
}

// ListOperations answers one page of operations, newest first.
// Scope operations:read.
func (c *Client) ListOperations(ctx context.Context, p ListOperationsParams) (*Page[Operation], error) {
	return callT[Page[Operation]](ctx, c, request{method: http.MethodGet, path: pathOf("operations"), query: encodeQuery(p)})
}

// AllOperations walks every page of ListOperations.
func (c *Client) AllOperations(ctx context.Context, p ListOperationsParams) iter.Seq2[Operation, error] {
	return all(ctx, p.Cursor, func(ctx context.Context, cursor string) (*Page[Operation], error) {
		p.Cursor = cursor
		return c.ListOperations(ctx, p)
	})
}

// GetOperation answers one operation. Scope operations:read.
func (c *Client) GetOperation(ctx context.Context, operationID string) (*Operation, error) {
	return callT[Operation](ctx, c, request{method: http.MethodGet, path: pathOf("operations", operationID)})
}

// ListKeys answers the account's keys. Scope keys:read.
func (c *Client) ListKeys(ctx context.Context) ([]Key, error) {
	return callSlice[Key](ctx, c, request{method: http.MethodGet, path: pathOf("keys")})
}

// CreateKey creates a key and answers it with its token (shown this once).
// Scope keys:write.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest, opts ...CallOption) (*KeyWithToken, error) {
	return callT[KeyWithToken](ctx, c, request{method: http.MethodPost, path: pathOf("keys"), body: req, opts: opts})
}

// RotateKey replaces a key's secret and answers the new token; the old one
// stops working. Scope keys:write.
func (c *Client) RotateKey(ctx context.Context, keyID string, opts ...CallOption) (*KeyWithToken, error) {
	return callT[KeyWithToken](ctx, c, request{method: http.MethodPost, path: pathOf("keys", keyID, "rotate"), opts: opts})
}

// RevokeKey revokes a key. Scope keys:write.
func (c *Client) RevokeKey(ctx context.Context, keyID string, opts ...CallOption) error {
	return c.call(ctx, request{method: http.MethodDelete, path: pathOf("keys", keyID), opts: opts}, nil)
}

// ListWebhooks answers the account's webhook endpoints. Scope webhooks:read.
func (c *Client) ListWebhooks(ctx context.Context) ([]WebhookEndpoint, error) {
	return callSlice[WebhookEndpoint](ctx, c, request{method: http.MethodGet, path: pathOf("webhooks")})
}

// CreateWebhook creates an endpoint and answers it with its signing secret
// (shown this once). Scope webhooks:write.
func (c *Client) CreateWebhook(ctx context.Context, req CreateWebhookRequest, opts ...CallOption) (*WebhookEndpointWithSecret, error) {
	return callT[WebhookEndpointWithSecret](ctx, c, request{method: http.MethodPost, path: pathOf("webhooks"), body: req, opts: opts})
}

// UpdateWebhook changes an endpoint's URL, events or enabled flag.
// Scope webhooks:write.
func (c *Client) UpdateWebhook(ctx context.Context, webhookID string, req UpdateWebhookRequest, opts ...CallOption) (*WebhookEndpoint, error) {
	return callT[WebhookEndpoint](ctx, c, request{method: http.MethodPatch, path: pathOf("webhooks", webhookID), body: req, opts: opts})
}

// DeleteWebhook deletes an endpoint. Scope webhooks:write.
func (c *Client) DeleteWebhook(ctx context.Context, webhookID string, opts ...CallOption) error {
	return c.call(ctx, request{method: http.MethodDelete, path: pathOf("webhooks", webhookID), opts: opts}, nil)
}

// TestWebhook queues a webhook.test event to an endpoint and answers the
// delivery. Scope webhooks:write.
func (c *Client) TestWebhook(ctx context.Context, webhookID string, opts ...CallOption) (*WebhookDelivery, error) {
	return callT[WebhookDelivery](ctx, c, request{method: http.MethodPost, path: pathOf("webhooks", webhookID, "test"), opts: opts})
}

// ListWebhookDeliveriesParams filter and page an endpoint's deliveries.
type ListWebhookDeliveriesParams struct {
	Status DeliveryStatus `query:"status"`
	Limit  int            `query:"limit"`
	Cursor string         `query:"cursor"`
}

// ListWebhookDeliveries answers one page of an endpoint's deliveries,
// newest first. Scope webhooks:read.
func (c *Client) ListWebhookDeliveries(ctx context.Context, webhookID string, p ListWebhookDeliveriesParams) (*Page[WebhookDelivery], error) {
	return callT[Page[WebhookDelivery]](ctx, c, request{method: http.MethodGet, path: pathOf("webhooks", webhookID, "deliveries"), query: encodeQuery(p)})
}

// AllWebhookDeliveries walks every page of ListWebhookDeliveries.
func (c *Client) AllWebhookDeliveries(ctx context.Context, webhookID string, p ListWebhookDeliveriesParams) iter.Seq2[WebhookDelivery, error] {
	return all(ctx, p.Cursor, func(ctx context.Context, cursor string) (*Page[WebhookDelivery], error) {
		p.Cursor = cursor
		return c.ListWebhookDeliveries(ctx, webhookID, p)
	})
}

// ListLogsParams filter and page the audit log. From is inclusive, To
// exclusive.
type ListLogsParams struct {
	KeyID  string    `query:"key_id"`
	From   time.Time `query:"from"`
	To     time.Time `query:"to"`
	Limit  int       `query:"limit"`
	Cursor string    `query:"cursor"`
}

// ListLogs answers one page of the audit log, newest first. Scope logs:read.
func (c *Client) ListLogs(ctx context.Context, p ListLogsParams) (*Page[AuditEntry], error) {
	return callT[Page[AuditEntry]](ctx, c, request{method: http.MethodGet, path: pathOf("logs"), query: encodeQuery(p)})
}

// AllLogs walks every page of ListLogs.
func (c *Client) AllLogs(ctx context.Context, p ListLogsParams) iter.Seq2[AuditEntry, error] {
	return all(ctx, p.Cursor, func(ctx context.Context, cursor string) (*Page[AuditEntry], error) {
		p.Cursor = cursor
		return c.ListLogs(ctx, p)
	})
}

// GetUsageParams choose the UTC days (YYYY-MM-DD, both inclusive); empty
// means the last 30 days.
type GetUsageParams struct {
	From string `query:"from"`
	To   string `query:"to"`
}

// GetUsage answers requests per key and running hours per instance, per
// day. Scope usage:read.
func (c *Client) GetUsage(ctx context.Context, p GetUsageParams) (*Usage, error) {
	return callT[Usage](ctx, c, request{method: http.MethodGet, path: pathOf("usage"), query: encodeQuery(p)})
}

// GetAccount answers the account's plan, quota and rate limits.
// Scope account:read.
func (c *Client) GetAccount(ctx context.Context) (*Account, error) {
	return callT[Account](ctx, c, request{method: http.MethodGet, path: pathOf("account")})
}

// GetOpenAPI answers the API's OpenAPI document as JSON. No token needed.
func (c *Client) GetOpenAPI(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.call(ctx, request{method: http.MethodGet, path: apiPrefix + "/openapi.json"}, &out)
}

// Healthz answers whether the API process is up. No token needed.
func (c *Client) Healthz(ctx context.Context) (*Health, error) {
	return callT[Health](ctx, c, request{method: http.MethodGet, path: "/healthz"})
}

// Readyz answers whether the API reaches Postgres and Redis. No token
// needed. An unready server's 503 is an *APIError whose Message names the
// unreachable dependency.
func (c *Client) Readyz(ctx context.Context) (*Readiness, error) {
	return callT[Readiness](ctx, c, request{method: http.MethodGet, path: "/readyz"})
}

// operation sends a lifecycle call and decodes its Operation.
func (c *Client) operation(ctx context.Context, method, path string, body any, opts []CallOption) (*Operation, error) {
	var out Operation
	if err := c.call(ctx, request{method: method, path: path, body: body, opts: opts}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// callT sends r and answers its decoded JSON, or nil and the error.
func callT[T any](ctx context.Context, c *Client, r request) (*T, error) {
	var out T
	if err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// callSlice sends r and answers its decoded JSON array.
func callSlice[T any](ctx context.Context, c *Client, r request) ([]T, error) {
	var out []T
	if err := c.call(ctx, r, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ListVersions answers the OpenClaw versions an instance can run, the
// default among them. Scope instance:read.
func (c *Client) ListVersions(ctx context.Context) ([]OpenClawVersion, error) {
	return callSlice[OpenClawVersion](ctx, c, request{method: http.MethodGet, path: pathOf("versions")})
}

// UpgradeInstance accepts moving an instance to another version; the
// worker rolls it back when the new version does not come up healthy.
// Scope instance:write.
func (c *Client) UpgradeInstance(ctx context.Context, instanceID string, req UpgradeRequest, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodPost, pathOf("instances", instanceID, "upgrade"), req, opts)
}

// ListSecrets answers an instance's secrets, without their values. Scope
// instance:read.
func (c *Client) ListSecrets(ctx context.Context, instanceID string) ([]Secret, error) {
	return callSlice[Secret](ctx, c, request{method: http.MethodGet, path: pathOf("instances", instanceID, "secrets")})
}

// PutSecret accepts setting one secret; an instance.configure operation
// applies it to the machine. Scope instance:write.
func (c *Client) PutSecret(ctx context.Context, instanceID, name string, req PutSecretRequest, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodPut, pathOf("instances", instanceID, "secrets", name), req, opts)
}

// DeleteSecret accepts removing one secret; an instance.configure
// operation applies it. Scope instance:write.
func (c *Client) DeleteSecret(ctx context.Context, instanceID, name string, opts ...CallOption) (*Operation, error) {
	return c.operation(ctx, http.MethodDelete, pathOf("instances", instanceID, "secrets", name), nil, opts)
}
