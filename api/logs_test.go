package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// logEntry is an item of GET /api/v1/logs.
type logEntry struct {
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

type logPage struct {
	Data       []logEntry `json:"data"`
	NextCursor *string    `json:"next_cursor"`
}

func (e *apiEnv) getLogs(token, query string) (*response, logPage) {
	e.t.Helper()
	r := e.do("GET", "/api/v1/logs"+query, token, nil)
	var p logPage
	if r.Status == http.StatusOK {
		r.JSON(e.t, &p)
	}
	return r, p
}

// TestLogsRecordChanges: each request that changed something is in the log,
// newest first, with who, what, the answer's status, the operation and the
// request id; reads and refused requests are not.
func TestLogsRecordChanges(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro", apikey.PresetFull)
	kid, _, _ := apikey.Parse(tok)

	created := e.do("POST", "/api/v1/keys", tok, map[string]any{"name": "ci", "scopes": []string{"read-only"}}, "X-Request-Id", "req-create-key")
	if created.Status != 201 {
		t.Fatal(created.Status, string(created.Body))
	}
	inst := e.do("POST", "/api/v1/instances", tok, map[string]any{"subdomain": "logged"}, "X-Request-Id", "req-create-inst")
	if inst.Status != 202 {
		t.Fatal(inst.Status, string(inst.Body))
	}
	var op struct{ ID string }
	inst.JSON(t, &op)
	// Reads and refusals change nothing, so they leave no entry.
	e.do("GET", "/api/v1/keys", tok, nil)
	if r := e.do("POST", "/api/v1/instances", tok, map[string]any{"subdomain": "logged"}); r.Status != 409 {
		t.Fatalf("duplicate subdomain: %d", r.Status)
	}

	r, p := e.getLogs(tok, "")
	if r.Status != 200 {
		t.Fatal(r.Status, string(r.Body))
	}
	if len(p.Data) != 2 || p.NextCursor != nil {
		t.Fatalf("log: %s", r.Body)
	}
	in, k := p.Data[0], p.Data[1]
	if in.Method != "POST" || in.Path != "/api/v1/instances" || in.Status != 202 || in.OperationID == nil || *in.OperationID != op.ID ||
		in.RequestID != "req-create-inst" || in.KeyID != kid || in.KeyName != "test" || in.ClientIP != "127.0.0.1" {
		t.Errorf("instance create entry: %+v", in)
	}
	if k.Path != "/api/v1/keys" || k.Status != 201 || k.OperationID != nil || k.RequestID != "req-create-key" {
		t.Errorf("key create entry: %+v", k)
	}
	if !strings.HasPrefix(in.ID, "log_") || in.ID == k.ID {
		t.Errorf("ids %q, %q", in.ID, k.ID)
	}
	if in.CreatedAt.Location() != time.UTC || time.Since(in.CreatedAt) > time.Minute || in.CreatedAt.Before(k.CreatedAt) {
		t.Errorf("created_at %v, %v", in.CreatedAt, k.CreatedAt)
	}
	if !strings.HasSuffix(string(r.Body), "}") || strings.Contains(string(r.Body), "account_id") || strings.Contains(string(r.Body), `"seq"`) {
		t.Errorf("internal fields in the answer: %s", r.Body)
	}
}

// TestLogsFilters: by key and by time range; each filter combination is its
// own list, so a cursor from one is refused by another.
func TestLogsFilters(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, tok := e.account("business", apikey.PresetFull)
	other := e.key(acct, apikey.KeysWrite, apikey.LogsRead)
	kid, _, _ := apikey.Parse(tok)
	oid, _, _ := apikey.Parse(other)
	for i := 0; i < 3; i++ {
		if r := e.do("POST", "/api/v1/keys", tok, map[string]any{"name": "a", "scopes": []string{"logs:read"}}); r.Status != 201 {
			t.Fatal(r.Status)
		}
	}
	if r := e.do("POST", "/api/v1/keys", other, map[string]any{"name": "b", "scopes": []string{"logs:read"}}); r.Status != 201 {
		t.Fatal(r.Status)
	}
	// Age the first entry, so that a time range can tell it apart.
	ctx := context.Background()
	if _, err := e.st.DB.ExecContext(ctx, `UPDATE audit_log SET created_at = '2025-01-10T12:00:00Z'
		WHERE seq = (SELECT min(seq) FROM audit_log WHERE account_id = $1)`, acct); err != nil {
		t.Fatal(err)
	}

	count := func(query string) int {
		t.Helper()
		r, p := e.getLogs(tok, query)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", query, r.Status, r.Body)
		}
		return len(p.Data)
	}
	for _, c := range []struct {
		query string
		want  int
	}{
		{"", 4},
		{"?key_id=" + kid, 3},
		{"?key_id=" + oid, 1},
		{"?key_id=key_unknown000000000000", 0},
		{"?from=2025-01-10T12:00:00Z&to=2025-01-10T12:00:01Z", 1}, // from inclusive
		{"?from=2025-01-10T11:00:00Z&to=2025-01-10T12:00:00Z", 0}, // to exclusive
		{"?to=2025-01-11T00:00:00%2B01:00", 1},                    // an offset is an instant like any other
		{"?from=2025-01-11T00:00:00Z", 3},
		{"?from=2025-01-11T00:00:00Z&key_id=" + kid, 2},
	} {
		if got := count(c.query); got != c.want {
			t.Errorf("%s: %d entries, want %d", c.query, got, c.want)
		}
	}

	for _, q := range []string{"?key_id=inst_abc", "?key_id=nope", "?from=yesterday", "?to=2025-01-10", "?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", "?limit=0", "?limit=201", "?limit=x"} {
		r, _ := e.getLogs(tok, q)
		if r.Status != 400 || r.Code(t) != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", q, r.Status, r.Body)
		}
	}

	// A cursor of the unfiltered list is refused by the filtered ones.
	r, p := e.getLogs(tok, "?limit=1")
	if r.Status != 200 || p.NextCursor == nil {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	cur := url.QueryEscape(*p.NextCursor)
	for _, q := range []string{"?key_id=" + kid + "&cursor=" + cur, "?from=2025-01-11T00:00:00Z&cursor=" + cur} {
		if r, _ := e.getLogs(tok, q); r.Status != 400 || r.Code(t) != "invalid_cursor" {
			t.Errorf("%s: %d %s, want 400 invalid_cursor", q, r.Status, r.Body)
		}
	}
	if r, _ := e.getLogs(tok, "?limit=1&cursor="+cur); r.Status != 200 {
		t.Errorf("the cursor in its own list: %d %s", r.Status, r.Body)
	}
}

// TestLogsCursorForgedOrForeign: a cursor that was not issued for this
// list (random, altered, truncated, another account's, another list's, or
// issued under another pepper) is a 400 invalid_cursor, never a 500.
func TestLogsCursorForgedOrForeign(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acctA, tokA := e.account("pro", apikey.PresetFull)
	_, tokB := e.account("pro", apikey.PresetFull)
	for i := 0; i < 3; i++ {
		for _, tok := range []string{tokA, tokB} {
			if r := e.do("POST", "/api/v1/keys", tok, map[string]any{"name": "k", "scopes": []string{"logs:read"}}); r.Status != 201 {
				t.Fatal(r.Status)
			}
		}
	}
	_, pa := e.getLogs(tokA, "?limit=1")
	if pa.NextCursor == nil {
		t.Fatal("no cursor")
	}
	good := *pa.NextCursor
	altered := []byte(good)
	altered[3] ^= 1
	if altered[3] == '-' || altered[3] == '_' {
		altered[3] = 'A'
	}
	opsResp := e.do("GET", "/api/v1/operations?limit=1", tokA, nil)
	if opsResp.Status != 200 {
		t.Fatal(opsResp.Status)
	}
	// A replica with another pepper issues cursors this one refuses: the
	// cursor of a server whose pepper was rotated is stale.
	rotated := startAPIOn(t, e.st, e.redis, func(o *api.Options) { o.Pepper = []byte("another-pepper-9876543210") })
	stale := rotated.srv.SealLogCursor("logs|"+acctA+"|||", time.Now(), 1<<40)

	for name, cur := range map[string]string{
		"random":        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"not base64":    "!!!",
		"altered":       string(altered),
		"truncated":     good[:len(good)-2],
		"another list":  e.srv.SealCursor("ops||", 1<<40),
		"stale":         stale,
		"seq-only":      e.srv.SealCursor("logs|"+acctA+"|||", 1<<40),
		"empty seq":     e.srv.SealLogCursor("logs|"+acctA+"|||", time.Now(), 0),
		"negative seq":  e.srv.SealLogCursor("logs|"+acctA+"|||", time.Now(), -5),
		"extra garbage": good + "AAAA",
	} {
		if r, _ := e.getLogs(tokA, "?cursor="+url.QueryEscape(cur)); r.Status != 400 || r.Code(t) != "invalid_cursor" {
			t.Errorf("%s cursor: %d %s, want 400 invalid_cursor", name, r.Status, r.Body)
		}
	}
	// Account A's cursor is refused for account B, though B's list has the
	// same shape: it never becomes a way to walk another list.
	if r, _ := e.getLogs(tokB, "?cursor="+url.QueryEscape(good)); r.Status != 400 || r.Code(t) != "invalid_cursor" {
		t.Errorf("A's cursor used by B: %d %s", r.Status, r.Body)
	}
	// A cursor whose entries were pruned meanwhile still pages on.
	if _, err := e.st.DB.ExecContext(context.Background(), `DELETE FROM audit_log WHERE account_id = $1`, acctA); err != nil {
		t.Fatal(err)
	}
	if r, p := e.getLogs(tokA, "?cursor="+url.QueryEscape(good)); r.Status != 200 || len(p.Data) != 0 {
		t.Errorf("cursor over pruned entries: %d %s", r.Status, r.Body)
	}
}

// TestLogsTenantIsolation: account B sees none of A's entries, however it
// asks.
func TestLogsTenantIsolation(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tokA := e.account("pro", apikey.PresetFull)
	_, tokB := e.account("pro", apikey.PresetFull)
	kidA, _, _ := apikey.Parse(tokA)
	for i := 0; i < 3; i++ {
		if r := e.do("POST", "/api/v1/keys", tokA, map[string]any{"name": "a", "scopes": []string{"logs:read"}}); r.Status != 201 {
			t.Fatal(r.Status)
		}
	}
	if r := e.do("POST", "/api/v1/keys", tokB, map[string]any{"name": "b", "scopes": []string{"logs:read"}}); r.Status != 201 {
		t.Fatal(r.Status)
	}
	if _, p := e.getLogs(tokA, ""); len(p.Data) != 3 {
		t.Fatalf("A sees %d entries, want 3", len(p.Data))
	}
	for _, q := range []string{"", "?key_id=" + kidA, "?from=2000-01-01T00:00:00Z"} {
		r, p := e.getLogs(tokB, q)
		if r.Status != 200 {
			t.Fatalf("%s: %d", q, r.Status)
		}
		for _, en := range p.Data {
			if en.KeyID == kidA {
				t.Errorf("%s: B sees A's entry %+v", q, en)
			}
		}
		if q == "?key_id="+kidA && len(p.Data) != 0 {
			t.Errorf("B filtering on A's key sees %d entries", len(p.Data))
		}
	}
}

// TestLogsPagingWhileWriting pages through 1,000 entries, 37 at a time,
// while new entries keep arriving between the pages: every one of the
// 1,000 is served exactly once, in order, and nothing newer than the first
// page slips into the later ones.
func TestLogsPagingWhileWriting(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, tok := e.account("business", apikey.PresetFull)
	ctx := context.Background()
	const seeded = 1000
	for i := 0; i < seeded; i++ {
		if err := store.InsertAudit(ctx, e.st.DB, store.AuditEntry{
			AccountID: acct, KeyID: "key_seed", KeyName: "seed", Method: "POST", Path: "/api/v1/keys",
			Status: 201, ClientIP: "10.0.0.1", RequestID: fmt.Sprintf("seed-%04d", i),
		}, nil); err != nil {
			t.Fatal(err)
		}
	}

	// The writer adds entries until the reader is done, through the same
	// INSERT the change path uses and through real requests.
	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writerErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := store.InsertAudit(ctx, e.st.DB, store.AuditEntry{
				AccountID: acct, KeyID: "key_live", KeyName: "live", Method: "DELETE", Path: "/api/v1/keys/x",
				Status: 204, ClientIP: "10.0.0.2", RequestID: fmt.Sprintf("live-%d", i),
			}, nil)
			if err != nil {
				writerErr <- err
				return
			}
			written.Add(1)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	seen := map[string]int{}
	var order []string
	cursor := ""
	pages := 0
	// The writer is one goroutine writing one entry after the other: once
	// the first page is served and `written` reads n, entries live-0 to
	// live-n may be older than the first page's end; live-(n+1) and later
	// began after it was served, so they are newer and never come later.
	var newest int64 = -1
	for {
		before := written.Load()
		q := "?limit=37"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		r, p := e.getLogs(tok, q)
		if r.Status != 200 {
			t.Fatalf("page %d: %d %s", pages, r.Status, r.Body)
		}
		if pages == 0 {
			newest = written.Load()
		}
		for _, en := range p.Data {
			seen[en.RequestID]++
			if strings.HasPrefix(en.RequestID, "seed-") {
				order = append(order, en.RequestID)
				continue
			}
			var n int64
			if _, err := fmt.Sscanf(en.RequestID, "live-%d", &n); err != nil {
				t.Fatalf("unexpected entry %s", en.RequestID)
			}
			if pages > 0 && n > newest {
				t.Fatalf("page %d holds %s, written after the first page was served (live-%d)", pages, en.RequestID, newest)
			}
		}
		pages++
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
		// Make sure entries really are arriving between pages.
		testenv.Eventually(t, "the writer to add an entry", func() bool { return written.Load() > before })
	}
	select {
	case err := <-writerErr:
		t.Fatal(err)
	default:
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s served %d times", id, n)
		}
	}
	if len(order) != seeded {
		t.Fatalf("served %d of the %d seeded entries in %d pages", len(order), seeded, pages)
	}
	for i, id := range order {
		if want := fmt.Sprintf("seed-%04d", seeded-1-i); id != want {
			t.Fatalf("entry %d is %s, want %s (newest first, no gap)", i, id, want)
		}
	}
	if written.Load() < int64(pages-1) {
		t.Fatalf("only %d entries written during %d pages", written.Load(), pages)
	}
}

// TestLogsScope: logs:read is required; every other scope gets a 403 that
// names it.
func TestLogsScope(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, _ := e.account("pro", apikey.PresetFull)
	for _, c := range []struct{ path, scope string }{
		{"/api/v1/logs", apikey.LogsRead},
		{"/api/v1/usage", apikey.UsageRead},
		{"/api/v1/account", apikey.AccountRead},
	} {
		var others []string
		for _, s := range apikey.AllScopes {
			if s != c.scope {
				others = append(others, s)
			}
		}
		r := e.do("GET", c.path, e.key(acct, others...), nil)
		if r.Status != 403 || r.Code(t) != "insufficient_scope" || !strings.Contains(string(r.Body), c.scope) {
			t.Errorf("%s with every scope but %s: %d %s", c.path, c.scope, r.Status, r.Body)
		}
		if r := e.do("GET", c.path, e.key(acct, c.scope), nil); r.Status != 200 {
			t.Errorf("%s with %s alone: %d %s", c.path, c.scope, r.Status, r.Body)
		}
	}
}

// TestLogsSameInstant: entries of the same microsecond are ordered by
// their sequence, and paging through them one at a time serves each once.
func TestLogsSameInstant(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, tok := e.account("pro", apikey.PresetFull)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := store.InsertAudit(ctx, e.st.DB, store.AuditEntry{
			AccountID: acct, KeyID: "key_x", KeyName: "x", Method: "POST", Path: "/api/v1/keys",
			Status: 201, ClientIP: "10.0.0.1", RequestID: fmt.Sprintf("same-%d", i),
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.st.DB.ExecContext(ctx, `UPDATE audit_log SET created_at = '2025-03-10T10:00:00.123456Z' WHERE account_id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	var got []string
	q := "?limit=1"
	for {
		r, p := e.getLogs(tok, q)
		if r.Status != 200 {
			t.Fatal(r.Status, string(r.Body))
		}
		for _, en := range p.Data {
			got = append(got, en.RequestID)
		}
		if p.NextCursor == nil {
			break
		}
		q = "?limit=1&cursor=" + url.QueryEscape(*p.NextCursor)
	}
	if fmt.Sprint(got) != "[same-4 same-3 same-2 same-1 same-0]" {
		t.Fatalf("paged %v", got)
	}
}

// TestLifecycleCallAuditedInItsStatement: a lifecycle call without an
// Idempotency-Key is one statement, its audit entry included; with a key,
// change's transaction. Either way the call has exactly one entry, and a
// refused call (404, 409) none, nor any operation.
func TestLifecycleCallAuditedInItsStatement(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro", apikey.PresetFull)
	created := e.do("POST", "/api/v1/instances", tok, map[string]any{"subdomain": "audited"})
	if created.Status != 202 {
		t.Fatal(created.Status, string(created.Body))
	}
	var inst struct {
		InstanceID string `json:"instance_id"`
	}
	created.JSON(t, &inst)
	path := "/api/v1/instances/" + inst.InstanceID
	var ops []string
	for _, key := range []string{"", "audited-1"} {
		headers := []string{"X-Request-Id", "req-restart-" + key}
		if key != "" {
			headers = append(headers, "Idempotency-Key", key)
		}
		r := e.do("POST", path+"/restart", tok, nil, headers...)
		if r.Status != 202 || r.Header.Get("Location") == "" {
			t.Fatalf("restart (key %q): %d %s", key, r.Status, r.Body)
		}
		var op struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		r.JSON(t, &op)
		if op.Status != "pending" || r.Header.Get("Location") != "/api/v1/operations/"+op.ID {
			t.Fatalf("restart (key %q): %s, Location %s", key, r.Body, r.Header.Get("Location"))
		}
		ops = append(ops, op.ID)
		if key == "" {
			continue
		}
		// The keyed call's answer was rendered before its statement wrote
		// the operation: it is the operation as it reads, what a replay of
		// the key answers, and dated between the key's claim and the
		// statement (the claim's clock, acceptAlone).
		if got := e.do("GET", "/api/v1/operations/"+op.ID, tok, nil); got.Status != 200 || string(got.Body) != string(r.Body) {
			t.Errorf("GET the operation: %d %s\nthe 202: %s", got.Status, got.Body, r.Body)
		}
		if again := e.do("POST", path+"/restart", tok, nil, headers...); again.Status != 202 || string(again.Body) != string(r.Body) ||
			again.Header.Get("Location") != r.Header.Get("Location") {
			t.Errorf("the replay: %d %s, Location %s\nthe 202: %s", again.Status, again.Body, again.Header.Get("Location"), r.Body)
		}
		var claimed, created, audited time.Time
		if err := e.st.DB.QueryRow(`SELECT k.created_at, o.created_at, a.created_at FROM idempotency_keys k, operations o, audit_log a
			WHERE k.key = $1 AND o.id = $2 AND a.operation_id = o.id`, key, op.ID).Scan(&claimed, &created, &audited); err != nil {
			t.Fatal(err)
		}
		if created.Before(claimed) || audited.Before(created) {
			t.Errorf("the claim at %v, the operation created at %v, its audit entry at %v", claimed, created, audited)
		}
	}
	// A keyed call refused (404) stores its refusal as any call does.
	missing := "/api/v1/instances/inst_nosuchinstance00000/restart"
	for range 2 {
		if r := e.do("POST", missing, tok, nil, "Idempotency-Key", "audited-404"); r.Status != 404 {
			t.Fatalf("an unknown instance, keyed: %d %s", r.Status, r.Body)
		}
	}
	if r := e.do("POST", "/api/v1/instances/inst_nosuchinstance00000/restart", tok, nil); r.Status != 404 {
		t.Fatalf("an unknown instance: %d %s", r.Status, r.Body)
	}
	del := e.do("DELETE", path, tok, nil)
	if del.Status != 202 {
		t.Fatal(del.Status, string(del.Body))
	}
	var delOp struct{ ID string }
	del.JSON(t, &delOp)
	if r := e.do("POST", path+"/start", tok, nil); r.Status != 409 {
		t.Fatalf("a start while the delete is under way: %d %s", r.Status, r.Body)
	}

	_, p := e.getLogs(tok, "")
	want := []string{delOp.ID, ops[1], ops[0]} // newest first, then the create
	if len(p.Data) != len(want)+1 {
		t.Fatalf("%d entries, want %d: %+v", len(p.Data), len(want)+1, p.Data)
	}
	for i, opID := range want {
		got := p.Data[i]
		if got.OperationID == nil || *got.OperationID != opID || got.Status != 202 || got.Method == "" || got.KeyName != "test" {
			t.Errorf("entry %d: %+v, want operation %s", i, got, opID)
		}
	}
	if p.Data[2].RequestID != "req-restart-" || p.Data[1].RequestID != "req-restart-audited-1" {
		t.Errorf("request ids %q, %q", p.Data[2].RequestID, p.Data[1].RequestID)
	}
	var n int
	if err := e.st.DB.Get(&n, `SELECT count(*) FROM operations WHERE instance_id = $1`, inst.InstanceID); err != nil || n != 4 {
		t.Fatalf("%d operations (%v), want the create, two restarts and the delete", n, err)
	}
}
