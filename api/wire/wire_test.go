package wire_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/store"
)

// marshal is the JSON object v becomes on the wire.
func marshal(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOperation(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	code, msg := "fly_rejected", "no"
	tests := []struct {
		name      string
		row       store.Operation
		wantError any
	}{
		{name: "succeeded: error is null", row: store.Operation{ID: "op_1", Type: store.OpStop, Status: store.OpSucceeded, CreatedAt: at, FinishedAt: &at}},
		{name: "failed: error has code and message", row: store.Operation{ID: "op_2", Type: store.OpStop, Status: store.OpFailed, CreatedAt: at, FinishedAt: &at, ErrorCode: &code, ErrorMessage: &msg},
			wantError: map[string]any{"code": code, "message": msg}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := marshal(t, wire.NewOperation(tt.row))
			if len(got) != 8 {
				t.Errorf("%d fields, want 8: %v", len(got), got)
			}
			if got["type"] != store.OpStop || got["created_at"] != "2026-01-02T02:04:05Z" || got["started_at"] != nil {
				t.Errorf("got %v", got)
			}
			if e, _ := json.Marshal(got["error"]); string(e) != mustJSON(t, tt.wantError) {
				t.Errorf("error = %s, want %s", e, mustJSON(t, tt.wantError))
			}
		})
	}
}

func TestInstance(t *testing.T) {
	app := "moc-inst-1"
	row := store.Instance{ID: "inst_1", AccountID: "acct_1", Subdomain: "claw", Status: store.StatusRunning, Plan: "pro", FlyRegion: "iad", FlyApp: &app}
	tests := []struct {
		name, baseDomain, wantURL string
	}{
		{"default base domain", "", "https://claw.myopenclaw.ai"},
		{"configured base domain", "example.test", "https://claw.example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := marshal(t, wire.NewInstance(row, tt.baseDomain))
			if got["url"] != tt.wantURL {
				t.Errorf("url = %v, want %s", got["url"], tt.wantURL)
			}
			for _, private := range []string{"account_id", "fly_app", "fly_machine_id", "deleted_at"} {
				if _, ok := got[private]; ok {
					t.Errorf("private field %s on the wire: %v", private, got)
				}
			}
		})
	}
}

func TestEmptyListIsAnArray(t *testing.T) {
	raw, err := json.Marshal(wire.Page[wire.Key]{Data: wire.List([]store.Key(nil), wire.NewKey)})
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"data":[],"next_cursor":null}` {
		t.Fatalf("empty page = %s", raw)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
