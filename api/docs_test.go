package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/openapi"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/versions"
	"github.com/myopenclaw/mocd/webhook"
)

// The document and the reference page need no token, and the page loads
// nothing but what this server serves.
func TestDocsAndOpenAPIArePublic(t *testing.T) {
	t.Parallel()
	// Production settings: plain HTTP is refused for the API itself.
	e := startAPI(t, func(o *api.Options) { o.AllowPlainHTTP = false })
	if r := e.do("GET", "/api/v1/keys", "", nil); r.Status != 403 || r.Code(t) != "https_required" {
		t.Fatalf("the API should refuse plain HTTP here: %d %s", r.Status, r.Body)
	}

	spec := e.do("GET", "/api/v1/openapi.json", "", nil)
	want, err := openapi.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Status != 200 || !strings.HasPrefix(spec.Header.Get("Content-Type"), "application/json") || !bytes.Equal(spec.Body, want) {
		t.Fatalf("openapi.json: %d %s, %d bytes", spec.Status, spec.Header.Get("Content-Type"), len(spec.Body))
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	spec.JSON(t, &doc)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	if spec.Header.Get("X-Request-Id") == "" || spec.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("openapi.json headers: %v", spec.Header)
	}
	if r := e.do("GET", "/api/v1/openapi.json", "", nil, "If-None-Match", spec.Header.Get("ETag")); r.Status != 304 || len(r.Body) != 0 {
		t.Errorf("revalidation: %d, %d bytes", r.Status, len(r.Body))
	}
	if r := e.do("POST", "/api/v1/openapi.json", "", "{}"); r.Status != 405 {
		t.Errorf("POST openapi.json: %d %s", r.Status, r.Body)
	}

	page := e.do("GET", "/docs", "", nil)
	if page.Status != 200 || page.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("docs: %d %s", page.Status, page.Header.Get("Content-Type"))
	}
	csp := page.Header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "img-src 'self' data:", "font-src 'self' data:"} {
		if !strings.Contains(csp, d) {
			t.Errorf("Content-Security-Policy lacks %q: %s", d, csp)
		}
	}
	html := string(page.Body)
	// No address of another host anywhere in the page: not in an attribute,
	// not in a style, not in text.
	if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+`).FindAllString(html, -1); len(m) > 0 {
		t.Errorf("the page names other hosts: %v", m)
	}
	if strings.Contains(html, "<script>") {
		t.Error("an inline script: the CSP allows none")
	}
	refs := regexp.MustCompile(`(?:src|href|spec-url)="([^"]*)"`).FindAllStringSubmatch(html, -1)
	var assets []string
	for _, m := range refs {
		u, err := url.Parse(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if u.Scheme == "data" {
			continue
		}
		if u.Host != "" || u.Scheme != "" || !strings.HasPrefix(u.Path, "/") {
			t.Errorf("a reference that is not a path on this server: %q", m[1])
		}
		assets = append(assets, u.Path)
	}
	if !slices.Contains(assets, "/docs/redoc.standalone.js") || !slices.Contains(assets, "/api/v1/openapi.json") {
		t.Fatalf("the page does not load the renderer and the document: %v", assets)
	}
	for _, a := range assets {
		if r := e.do("GET", a, "", nil); r.Status != 200 || len(r.Body) == 0 {
			t.Errorf("%s: %d", a, r.Status)
		}
	}

	js := e.do("GET", "/docs/redoc.standalone.js", "", nil, "Accept-Encoding", "identity")
	if js.Status != 200 || !bytes.Equal(js.Body, openapi.RedocJS()) || !strings.HasPrefix(js.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("redoc bundle: %d %s, %d bytes", js.Status, js.Header.Get("Content-Type"), len(js.Body))
	}
	gz := e.do("GET", "/docs/redoc.standalone.js", "", nil, "Accept-Encoding", "gzip")
	if gz.Header.Get("Content-Encoding") != "gzip" || len(gz.Body) >= len(js.Body)/2 {
		t.Fatalf("gzip: %q, %d bytes", gz.Header.Get("Content-Encoding"), len(gz.Body))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz.Body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(plain, openapi.RedocJS()) {
		t.Errorf("the gzipped bundle is not the bundle: %v", err)
	}
	if lic := e.do("GET", "/docs/redoc.standalone.js.LICENSE.txt", "", nil); lic.Status != 200 || !bytes.Equal(lic.Body, openapi.RedocLicenses()) {
		t.Errorf("licence notices: %d", lic.Status)
	}
}

// ginPath turns a document path into Gin's form: {instance_id} → :id.
func ginPath(p string) string {
	return regexp.MustCompile(`\{[a-z_]+\}`).ReplaceAllStringFunc(p, func(m string) string {
		if m == "{name}" {
			return ":name"
		}
		return ":id"
	})
}

// Every authenticated route of the server is in the document with the
// scope the server checks, and the document has no route the server lacks.
func TestDocumentCoversEveryRouteWithItsScope(t *testing.T) {
	t.Parallel()
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // "GET /api/v1/instances/:id" → scope
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if scope, ok := openapi.RequiredScope(op); ok {
				documented[method+" "+ginPath(path)] = scope
			}
		}
	}
	served := map[string]string{}
	for _, r := range api.New(api.Options{}).Routes() {
		served[r.Method+" "+r.Path] = r.Scope
	}
	for route, scope := range served {
		switch got, ok := documented[route]; {
		case !ok:
			t.Errorf("%s is served but not in openapi/openapi.yaml", route)
		case got != scope:
			t.Errorf("%s: the server checks %s, the document says %s", route, scope, got)
		}
	}
	for route := range documented {
		if _, ok := served[route]; !ok {
			t.Errorf("%s is in the document but not served", route)
		}
	}
}

func enumOf(t *testing.T, s *openapi3.SchemaRef) []string {
	t.Helper()
	var out []string
	for _, v := range s.Value.Enum {
		out = append(out, v.(string))
	}
	sort.Strings(out)
	return out
}

func sorted(in []string) []string {
	out := slices.Clone(in)
	sort.Strings(out)
	return out
}

// The lists the document enumerates are the lists the code checks.
func TestDocumentEnumsMatchTheCode(t *testing.T) {
	t.Parallel()
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	schemas := doc.Components.Schemas
	create := schemas["CreateInstanceRequest"].Value
	for _, c := range []struct {
		name      string
		doc, code []string
	}{
		{"fly_region", enumOf(t, create.Properties["fly_region"]), sorted(api.FlyRegions)},
		{"Scope", enumOf(t, schemas["Scope"]), sorted(apikey.AllScopes)},
		{"ScopePreset", enumOf(t, schemas["ScopePreset"]), sorted([]string{apikey.PresetReadOnly, apikey.PresetWrite, apikey.PresetFull})},
		{"OperationStatus", enumOf(t, schemas["OperationStatus"]), sorted(store.OpStatuses)},
		{"OperationType", enumOf(t, schemas["OperationType"]), sorted(store.OpTypes)},
		{"WebhookEventType", enumOf(t, schemas["WebhookEventType"]), sorted(webhook.EventTypes())},
		{"DeliveryStatus", enumOf(t, schemas["DeliveryStatus"]), sorted(store.DeliveryStatuses)},
	} {
		if !slices.Equal(c.doc, c.code) {
			t.Errorf("%s: the document lists %v, the code %v", c.name, c.doc, c.code)
		}
	}
	if d := create.Properties["fly_region"].Value.Default; d != api.DefaultRegion {
		t.Errorf("fly_region default: the document says %v, the code %s", d, api.DefaultRegion)
	}
	desc := create.Properties["subdomain"].Value.Description
	for _, r := range api.ReservedSubdomains {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(r) + `\b`).MatchString(desc) {
			t.Errorf("reserved subdomain %q is not listed in the document", r)
		}
	}
	if !strings.Contains(doc.Paths.Value("/api/v1/webhooks").Post.Description, "at most 20") || api.MaxWebhookEndpoints != 20 {
		t.Errorf("the document's endpoint limit is not api.MaxWebhookEndpoints (%d)", api.MaxWebhookEndpoints)
	}
	b, _ := json.Marshal(schemas["InstanceStatus"].Value.Enum)
	for _, s := range []string{store.StatusCreating, store.StatusStarting, store.StatusRunning, store.StatusStopping, store.StatusStopped, store.StatusRestarting, store.StatusDeleting, store.StatusDeleted, store.StatusFailed} {
		if !strings.Contains(string(b), `"`+s+`"`) {
			t.Errorf("instance status %q is not in the document", s)
		}
	}
}

// contract is the document's validator, shared by the tests of this file.
var contract = sync.OnceValues(openapi.NewValidator)

// tour calls the api and checks every answer against the document,
// recording which operations answered with which statuses.
type tour struct {
	*apiEnv
	t    *testing.T
	v    *openapi.Validator
	seen map[string][]int // operationId → statuses
}

func (tr *tour) call(method, path, token string, body any, headers ...string) *response {
	tr.t.Helper()
	r := tr.do(method, path, token, body, headers...)
	req := httptest.NewRequest(method, tr.url+path, nil)
	if err := tr.v.ValidateResponse(req, r.Status, r.Header, r.Body); err != nil {
		tr.t.Errorf("%v", err)
	}
	op := tr.v.OperationID(req)
	tr.seen[op] = append(tr.seen[op], r.Status)
	return r
}

// stream opens an event stream, reads its opening message and closes it,
// checking the answer's status and headers against the document.
func (tr *tour) stream(path, token string) {
	tr.t.Helper()
	req, err := http.NewRequest("GET", tr.url+path, nil)
	if err != nil {
		tr.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer res.Body.Close()
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || res.StatusCode != 200 || !strings.HasPrefix(line, "retry: ") {
		tr.t.Fatalf("GET %s: %d, first line %q (%v)", path, res.StatusCode, line, err)
	}
	if err := tr.v.ValidateResponse(req, res.StatusCode, res.Header, []byte(line)); err != nil {
		tr.t.Errorf("%v", err)
	}
	op := tr.v.OperationID(req)
	tr.seen[op] = append(tr.seen[op], res.StatusCode)
}

// want calls and checks the status (and the code of an error answer).
func (tr *tour) want(status int, code string, method, path, token string, body any, headers ...string) *response {
	tr.t.Helper()
	r := tr.call(method, path, token, body, headers...)
	if r.Status != status || (code != "" && r.Code(tr.t) != code) {
		tr.t.Fatalf("%s %s: %d %s, want %d %s", method, path, r.Status, r.Body, status, code)
	}
	return r
}

// The e2e suite checks every answer it receives against the document; this
// tour reaches the operations and errors that suite does not (keys, logs,
// usage, account, the public routes, rate limits, a lost rate limiter),
// and shows that every operation of the document answered successfully at
// least once.
func TestEveryOperationAnswersAsDocumented(t *testing.T) {
	t.Parallel()
	v, err := contract()
	if err != nil {
		t.Fatal(err)
	}
	box, err := webhook.NewSecretBox(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	catalog, err := versions.Static([]versions.Version{
		{Version: "1.0.0", Image: "registry.example/openclaw:1.0.0", Default: true},
		{Version: "1.1.0", Image: "registry.example/openclaw:1.1.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := startAPI(t, func(o *api.Options) { o.SecretBox = box; o.WebhookAllowPrivate = true; o.Versions = catalog })
	tr := &tour{apiEnv: e, t: t, v: v, seen: map[string][]int{}}
	acct, tok := e.account("pro")

	// Public routes.
	tr.want(200, "", "GET", "/healthz", "", nil)
	tr.want(200, "", "GET", "/readyz", "", nil)
	tr.want(200, "", "GET", "/metrics", "", nil)
	tr.want(200, "", "GET", "/api/v1/openapi.json", "", nil)
	tr.want(200, "", "GET", "/docs", "", nil)
	tr.want(404, "not_found", "GET", "/api/v1/nothing-here", tok, nil)
	tr.want(405, "method_not_allowed", "PUT", "/api/v1/instances", tok, nil)

	// Authentication, plans, scopes.
	tr.want(401, "unauthorized", "GET", "/api/v1/instances", "", nil)
	tr.want(401, "unauthorized", "GET", "/api/v1/instances", "moc_not_a_token", nil)
	_, freeTok := e.account("free")
	tr.want(403, "plan_required", "GET", "/api/v1/account", freeTok, nil)
	readOnly := e.key(acct, apikey.PresetReadOnly)
	tr.want(403, "insufficient_scope", "POST", "/api/v1/instances", readOnly, map[string]string{"subdomain": "nope"})
	tr.want(403, "insufficient_scope", "POST", "/api/v1/keys", tok, map[string]any{"name": "x", "scopes": []string{"full"}},
		"Authorization", "Bearer "+e.key(acct, apikey.KeysWrite))

	// Keys.
	tr.want(200, "", "GET", "/api/v1/keys", tok, nil)
	create := map[string]any{"name": "ci-deploy", "scopes": []string{"write"}, "expires_at": time.Now().Add(24 * time.Hour).UTC()}
	k := tr.want(201, "", "POST", "/api/v1/keys", tok, create, "Idempotency-Key", "tour-key-1")
	if r := tr.want(201, "", "POST", "/api/v1/keys", tok, create, "Idempotency-Key", "tour-key-1"); r.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay without Idempotent-Replayed: %v", r.Header)
	}
	tr.want(422, "idempotency_key_reused", "POST", "/api/v1/keys", tok, map[string]any{"name": "other", "scopes": []string{"full"}}, "Idempotency-Key", "tour-key-1")
	tr.want(400, "invalid_idempotency_key", "POST", "/api/v1/keys", tok, create, "Idempotency-Key", strings.Repeat("k", 300))
	tr.want(400, "invalid_request", "POST", "/api/v1/keys", tok, `{"name": "x", "scope": ["full"]}`)
	tr.want(413, "payload_too_large", "POST", "/api/v1/keys", tok, strings.Repeat(" ", 1<<20+1))
	var key struct{ ID string }
	k.JSON(t, &key)
	tr.want(201, "", "POST", "/api/v1/keys/"+key.ID+"/rotate", tok, nil)
	tr.want(404, "not_found", "POST", "/api/v1/keys/key_unknown/rotate", tok, nil)
	tr.want(201, "", "POST", "/api/v1/keys", tok, `{"name": "preset", "scopes": "read-only"}`)
	past := time.Now().Add(-time.Minute)
	expired, _ := e.keyWith(acct, &past, apikey.PresetReadOnly)
	tr.want(409, "key_expired", "POST", "/api/v1/keys/"+expired+"/rotate", tok, nil)
	tr.want(204, "", "DELETE", "/api/v1/keys/"+key.ID, tok, nil)

	// Instances and operations (no worker runs here: operations stay pending).
	tr.want(200, "", "GET", "/api/v1/instances", tok, nil)
	tr.want(400, "invalid_request", "POST", "/api/v1/instances", tok, map[string]string{"subdomain": "tour", "fly_region": "mars"})
	c := tr.want(202, "", "POST", "/api/v1/instances", tok, map[string]string{"subdomain": "tour", "fly_region": "lhr"})
	tr.want(409, "subdomain_taken", "POST", "/api/v1/instances", tok, map[string]string{"subdomain": "tour"})
	var op struct {
		ID         string `json:"id"`
		InstanceID string `json:"instance_id"`
	}
	c.JSON(t, &op)
	inst := "/api/v1/instances/" + op.InstanceID
	tr.want(200, "", "GET", inst, tok, nil)
	tr.want(404, "not_found", "GET", "/api/v1/instances/inst_unknown", tok, nil)
	var lastOp struct{ ID string }
	for _, action := range []string{"start", "stop", "restart"} {
		tr.want(202, "", "POST", inst+"/"+action, tok, nil).JSON(t, &lastOp)
	}
	tr.want(200, "", "GET", inst+"/events?limit=1", tok, nil)
	tr.want(400, "invalid_cursor", "GET", inst+"/events?cursor=forged", tok, nil)
	tr.want(200, "", "GET", "/api/v1/operations?instance_id="+op.InstanceID+"&status=pending&limit=2", tok, nil)
	tr.want(400, "invalid_request", "GET", "/api/v1/operations?status=queued", tok, nil)
	tr.want(200, "", "GET", "/api/v1/operations/"+op.ID, tok, nil)
	tr.want(200, "", "GET", "/api/v1/operations?type=instance.restart&created_after=2020-01-01T00:00:00Z", tok, nil)
	tr.want(400, "invalid_request", "GET", "/api/v1/operations?created_before=yesterday", tok, nil)
	tr.want(200, "", "GET", "/api/v1/operations/"+op.ID+"/wait?timeout=1", tok, nil)
	tr.want(400, "invalid_request", "GET", "/api/v1/operations/"+op.ID+"/wait?timeout=56", tok, nil)
	tr.want(200, "", "POST", "/api/v1/operations/"+lastOp.ID+"/cancel", tok, nil)
	tr.want(409, "operation_not_cancellable", "POST", "/api/v1/operations/"+lastOp.ID+"/cancel", tok, nil)
	tr.want(200, "", "GET", "/api/v1/events?limit=5", tok, nil)
	tr.want(400, "invalid_request", "GET", "/api/v1/events?types=webhook.test", tok, nil)
	tr.want(400, "invalid_cursor", "GET", "/api/v1/events?after=forged", tok, nil)
	tr.stream("/api/v1/events/stream", tok)

	// Versions, upgrades and secrets.
	tr.want(200, "", "GET", "/api/v1/versions", tok, nil)
	tr.want(400, "unknown_version", "POST", "/api/v1/instances", tok, map[string]string{"subdomain": "tour-pinned", "version": "9.9.9"})
	tr.want(202, "", "POST", "/api/v1/instances", tok, map[string]string{"subdomain": "tour-pinned", "version": "1.1.0"})
	tr.want(400, "unknown_version", "POST", inst+"/upgrade", tok, map[string]string{"version": "9.9.9"})
	tr.want(202, "", "POST", inst+"/upgrade", tok, map[string]string{"version": "1.1.0"})
	tr.want(400, "invalid_request", "PUT", inst+"/secrets/FLY_TOKEN", tok, map[string]string{"value": "v"})
	tr.want(400, "invalid_request", "PUT", inst+"/secrets/TOUR_KEY", tok, map[string]string{"value": strings.Repeat("v", 32<<10+1)})
	tr.want(202, "", "PUT", inst+"/secrets/TOUR_KEY", tok, map[string]string{"value": "v"})
	tr.want(200, "", "GET", inst+"/secrets", tok, nil)
	tr.want(202, "", "DELETE", inst+"/secrets/TOUR_KEY", tok, nil)
	tr.want(404, "not_found", "DELETE", inst+"/secrets/TOUR_KEY", tok, nil)
	tr.want(202, "", "DELETE", inst, tok, nil)
	tr.want(409, "instance_deleting", "POST", inst+"/start", tok, nil)

	// Webhooks.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(hook.Close)
	tr.want(200, "", "GET", "/api/v1/webhooks", tok, nil)
	tr.want(400, "invalid_request", "POST", "/api/v1/webhooks", tok, map[string]any{"url": hook.URL, "events": []string{"nope"}})
	w := tr.want(201, "", "POST", "/api/v1/webhooks", tok, map[string]any{"url": hook.URL, "events": []string{"operation.succeeded"}})
	var ep struct{ ID string }
	w.JSON(t, &ep)
	wh := "/api/v1/webhooks/" + ep.ID
	tr.want(200, "", "PATCH", wh, tok, map[string]any{"events": []string{"operation.succeeded", "operation.failed"}})
	tr.want(202, "", "POST", wh+"/test", tok, nil)
	tr.want(200, "", "GET", wh+"/deliveries?status=pending", tok, nil)
	tr.want(200, "", "PATCH", wh, tok, map[string]any{"enabled": false})
	tr.want(409, "webhook_disabled", "POST", wh+"/test", tok, nil)
	tr.want(204, "", "DELETE", wh, tok, nil)
	tr.want(404, "not_found", "GET", wh+"/deliveries", tok, nil)

	// Logs, usage, account.
	tr.want(200, "", "GET", "/api/v1/logs?limit=5", tok, nil)
	tr.want(400, "invalid_request", "GET", "/api/v1/logs?from=yesterday", tok, nil)
	tr.want(200, "", "GET", "/api/v1/usage", tok, nil)
	tr.want(400, "invalid_request", "GET", "/api/v1/usage?from=2026-13-01", tok, nil)
	tr.want(200, "", "GET", "/api/v1/account", tok, nil)
	tr.want(200, "", "GET", "/api/v1/metrics", tok, nil)

	// A rate limit, then a rate limiter that cannot answer. The key's
	// allowance is spent through the limiter itself (the api's Redis and
	// key prefix), so the 429 does not depend on how fast requests go.
	limited := e.key(acct, apikey.PresetFull)
	keyID, _, err := apikey.Parse(limited)
	if err != nil {
		t.Fatal(err)
	}
	spender := ratelimit.New(e.redis.Client(), ratelimit.Options{Prefix: "test:rl:"})
	deadline := time.Now().Add(time.Minute)
	for tr.call("GET", "/api/v1/account", limited, nil).Status != 429 {
		if time.Now().After(deadline) {
			t.Fatal("no 429 within a minute of spending the key's allowance")
		}
		for {
			res, err := spender.Allow(context.Background(), ratelimit.ForPlan("pro", keyID, acct))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Allowed {
				break
			}
		}
	}
	e.redis.Stop()
	tr.want(503, "rate_limiter_unavailable", "GET", "/api/v1/instances", tok, nil)
	e.redis.Start()

	// Every operation of the document answered 2xx at least once.
	for path, item := range v.Document().Paths.Map() {
		for method, o := range item.Operations() {
			if !slices.ContainsFunc(tr.seen[o.OperationID], func(s int) bool { return s >= 200 && s < 300 }) {
				t.Errorf("%s %s (%s) was never answered successfully in this tour", method, path, o.OperationID)
			}
		}
	}
}
