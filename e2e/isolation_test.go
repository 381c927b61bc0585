package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestAccountsAreIsolated: account B gets exactly the 404 of an unknown id
// for every instance and operation id of account A, on every route, and
// nothing of A changes.
func TestAccountsAreIsolated(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, tokenA := sys.NewAccount(t, "pro")
	_, tokenB := sys.NewAccount(t, "pro")
	create := accept(t, sys, http.MethodPost, "/api/v1/instances", tokenA, map[string]string{"subdomain": "a-private"})
	sys.WaitOperation(t, tokenA, create.ID)
	instA, opA := create.InstanceID, create.ID
	unknownInst, unknownOp := "inst_00000000000000000000", "op_00000000000000000000"

	notFound := func(method, path string) {
		t.Helper()
		r := sys.Do(t, method, path, tokenB, nil)
		if r.Status != http.StatusNotFound {
			t.Fatalf("B %s %s: %d %s", method, path, r.Status, r.Body)
		}
		unknown := sys.Do(t, method, strings.NewReplacer(instA, unknownInst, opA, unknownOp).Replace(path), tokenB, nil)
		if string(r.Body) != string(unknown.Body) || unknown.Status != r.Status {
			t.Fatalf("B %s %s: %s differs from an unknown id's %d %s", method, path, r.Body, unknown.Status, unknown.Body)
		}
	}
	notFound(http.MethodGet, "/api/v1/instances/"+instA)
	notFound(http.MethodPost, "/api/v1/instances/"+instA+"/start")
	notFound(http.MethodPost, "/api/v1/instances/"+instA+"/stop")
	notFound(http.MethodPost, "/api/v1/instances/"+instA+"/restart")
	notFound(http.MethodDelete, "/api/v1/instances/"+instA)
	notFound(http.MethodGet, "/api/v1/instances/"+instA+"/events")
	notFound(http.MethodGet, "/api/v1/operations/"+opA)
	// Garbage and wrong-kind ids are the same 404.
	notFound(http.MethodGet, "/api/v1/instances/"+opA)
	notFound(http.MethodGet, "/api/v1/operations/"+instA)
	notFound(http.MethodGet, "/api/v1/instances/not-an-id")

	var list []Instance
	sys.Do(t, http.MethodGet, "/api/v1/instances", tokenB, nil).JSON(t, &list)
	if len(list) != 0 {
		t.Fatalf("B lists %+v", list)
	}
	var page struct {
		Data []Operation `json:"data"`
	}
	sys.Do(t, http.MethodGet, "/api/v1/operations?instance_id="+instA, tokenB, nil).JSON(t, &page)
	if len(page.Data) != 0 {
		t.Fatalf("B lists A's operations: %+v", page.Data)
	}
	sys.Do(t, http.MethodGet, "/api/v1/operations", tokenB, nil).JSON(t, &page)
	if len(page.Data) != 0 {
		t.Fatalf("B lists operations: %+v", page.Data)
	}
	if inst := getInstance(t, sys, tokenA, instA); inst.Status != "running" {
		t.Fatalf("A's instance is %s", inst.Status)
	}
	sys.Do(t, http.MethodGet, "/api/v1/operations", tokenA, nil).JSON(t, &page)
	if len(page.Data) != 1 {
		t.Fatalf("B's calls created operations on A's instance: %+v", page.Data)
	}
}

func TestInstanceValidation(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	accountID, token := sys.NewAccount(t, "pro")
	_, other := sys.NewAccount(t, "pro")

	bad := []struct {
		name string
		body any
		want string // part of the message
	}{
		{"no body", nil, "JSON body"},
		{"no subdomain", map[string]string{"fly_region": "iad"}, "subdomain"},
		{"too short", map[string]string{"subdomain": "ab"}, "subdomain"},
		{"too long", map[string]string{"subdomain": strings.Repeat("a", 64)}, "subdomain"},
		{"upper case", map[string]string{"subdomain": "MyClaw"}, "subdomain"},
		{"underscore", map[string]string{"subdomain": "my_claw"}, "subdomain"},
		{"leading hyphen", map[string]string{"subdomain": "-claw"}, "subdomain"},
		{"trailing hyphen", map[string]string{"subdomain": "claw-"}, "subdomain"},
		{"reserved", map[string]string{"subdomain": "www"}, "reserved"},
		{"reserved api", map[string]string{"subdomain": "api"}, "reserved"},
		{"unknown region", map[string]string{"subdomain": "claw", "fly_region": "mars"}, "fly_region"},
		{"unknown field", map[string]any{"subdomain": "claw", "size": 3}, "size"},
		{"wrong type", map[string]any{"subdomain": 42}, "subdomain"},
	}
	for _, tc := range bad {
		r := sys.Do(t, http.MethodPost, "/api/v1/instances", token, tc.body)
		var e struct{ Error, Code string }
		r.JSON(t, &e)
		if r.Status != http.StatusBadRequest || e.Code != "invalid_request" || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %d %s", tc.name, r.Status, r.Body)
		}
	}

	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "taken-claw", "fly_region": "fra"})
	// Unique among live instances of all accounts.
	r := sys.Do(t, http.MethodPost, "/api/v1/instances", other, map[string]string{"subdomain": "taken-claw"})
	if r.Status != http.StatusConflict || r.Code(t) != "subdomain_taken" {
		t.Fatalf("taken subdomain: %d %s", r.Status, r.Body)
	}
	sys.WaitOperation(t, token, create.ID)

	// A delete accepted and not finished makes every other call a 409.
	sys.StopWorker()
	del := accept(t, sys, http.MethodDelete, "/api/v1/instances/"+create.InstanceID, token, nil)
	for _, call := range []string{"start", "stop", "restart"} {
		r := sys.Do(t, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/"+call, token, nil)
		if r.Status != http.StatusConflict || r.Code(t) != "instance_deleting" {
			t.Fatalf("%s while deleting: %d %s", call, r.Status, r.Body)
		}
	}
	if r := sys.Do(t, http.MethodDelete, "/api/v1/instances/"+create.InstanceID, token, nil); r.Status != http.StatusConflict {
		t.Fatalf("second delete: %d %s", r.Status, r.Body)
	}
	sys.StartWorker()
	sys.WaitOperation(t, token, del.ID)
	// A deleted instance frees its subdomain.
	again := accept(t, sys, http.MethodPost, "/api/v1/instances", other, map[string]string{"subdomain": "taken-claw"})
	sys.WaitOperation(t, other, again.ID)

	// Operation list filters and paging.
	for _, q := range []string{"status=done", "instance_id=op_123", "limit=0", "limit=201", "cursor=forged"} {
		r := sys.Do(t, http.MethodGet, "/api/v1/operations?"+q, token, nil)
		if r.Status != http.StatusBadRequest {
			t.Errorf("operations?%s: %d %s", q, r.Status, r.Body)
		}
	}
	var page struct {
		Data       []Operation `json:"data"`
		NextCursor *string     `json:"next_cursor"`
	}
	sys.Do(t, http.MethodGet, "/api/v1/operations?limit=1", token, nil).JSON(t, &page)
	if len(page.Data) != 1 || page.Data[0].ID != del.ID || page.NextCursor == nil {
		t.Fatalf("first page %+v", page)
	}
	cursor := *page.NextCursor
	sys.Do(t, http.MethodGet, "/api/v1/operations?limit=1&cursor="+cursor, token, nil).JSON(t, &page)
	if len(page.Data) != 1 || page.Data[0].ID != create.ID || page.NextCursor != nil {
		t.Fatalf("second page %+v", page)
	}
	// A cursor belongs to its filters.
	if r := sys.Do(t, http.MethodGet, "/api/v1/operations?status=succeeded&limit=1&cursor="+cursor, token, nil); r.Status != http.StatusBadRequest {
		t.Fatalf("cursor under another filter: %d %s", r.Status, r.Body)
	}
	sys.Do(t, http.MethodGet, "/api/v1/operations?status=succeeded&instance_id="+create.InstanceID, token, nil).JSON(t, &page)
	if len(page.Data) != 2 {
		t.Fatalf("filtered list %+v", page.Data)
	}
	sys.Do(t, http.MethodGet, "/api/v1/operations?status=pending", token, nil).JSON(t, &page)
	if len(page.Data) != 0 {
		t.Fatalf("pending list %+v", page.Data)
	}

	// A key without instance:write may read but not change.
	readOnly := sys.NewKey(t, accountID, "read-only")
	if r := sys.Do(t, http.MethodPost, "/api/v1/instances", readOnly, map[string]string{"subdomain": "ro-claw"}); r.Status != http.StatusForbidden || r.Code(t) != "insufficient_scope" {
		t.Fatalf("read-only create: %d %s", r.Status, r.Body)
	}
}
