package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/lib/pq"

	"github.com/myopenclaw/mocd/id"
)

// TestFinishedOperationsQueueWebhooks: the transaction that finishes an
// operation writes the deliveries that report it — operation.succeeded and
// instance.status_changed — each payload the full envelope receivers get.
func TestFinishedOperationsQueueWebhooks(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	accountID, token := sys.NewAccount(t, "pro")
	ctx := context.Background()
	endpointID := id.New(id.Webhook)
	if _, err := sys.Store.DB.ExecContext(ctx, `INSERT INTO webhook_endpoints (id, account_id, url, events, secret_sealed)
		VALUES ($1, $2, 'https://hooks.example/mocd', $3, '\x00')`, endpointID, accountID,
		pq.Array([]string{"operation.succeeded", "operation.failed", "instance.status_changed"})); err != nil {
		t.Fatal(err)
	}
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "hooked"})
	sys.WaitOperation(t, token, op.ID)

	var rows []struct {
		EventID   string `db:"event_id"`
		EventType string `db:"event_type"`
		Payload   []byte `db:"payload"`
	}
	if err := sys.Store.DB.SelectContext(ctx, &rows, `SELECT event_id, event_type, payload FROM webhook_deliveries
		WHERE endpoint_id = $1 ORDER BY seq`, endpointID); err != nil {
		t.Fatal(err)
	}
	// The create's worker-made change is creating → running (creating was
	// shown when the call was accepted), then the operation's own event.
	if len(rows) != 2 || rows[0].EventType != "instance.status_changed" || rows[1].EventType != "operation.succeeded" {
		t.Fatalf("deliveries %+v", rows)
	}
	var changed struct {
		Type string `json:"type"`
		Data struct {
			Instance    Instance `json:"instance"`
			FromStatus  string   `json:"from_status"`
			ToStatus    string   `json:"to_status"`
			OperationID string   `json:"operation_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rows[0].Payload, &changed); err != nil {
		t.Fatal(err)
	}
	d := changed.Data
	if changed.Type != "instance.status_changed" || d.FromStatus != "creating" || d.ToStatus != "running" ||
		d.OperationID != op.ID || d.Instance.ID != op.InstanceID || d.Instance.Status != "running" ||
		d.Instance.URL != "https://hooked.myopenclaw.ai" {
		t.Fatalf("status_changed payload %s", rows[0].Payload)
	}
	var evID string
	if err := sys.Store.DB.GetContext(ctx, &evID, `SELECT id FROM instance_events WHERE instance_id = $1 AND to_status = 'running'`, op.InstanceID); err != nil || rows[0].EventID != evID {
		t.Fatalf("status_changed event id %s, instance event %s (%v)", rows[0].EventID, evID, err)
	}
	var succeeded struct {
		Type      string    `json:"type"`
		Timestamp string    `json:"timestamp"`
		Data      Operation `json:"data"`
	}
	if err := json.Unmarshal(rows[1].Payload, &succeeded); err != nil {
		t.Fatal(err)
	}
	if succeeded.Type != "operation.succeeded" || succeeded.Timestamp == "" || succeeded.Data.ID != op.ID ||
		succeeded.Data.Status != "succeeded" || succeeded.Data.FinishedAt == nil {
		t.Fatalf("operation.succeeded payload %s", rows[1].Payload)
	}
}
