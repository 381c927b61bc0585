package api_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/openapi"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/webhook"
)

// The document and the reference page need no token, and the page loads
// nothing but what this server serves.
func TestDocsAndOpenAPIArePublic(t *testing.T) {
	t.Parallel()
	// Production settings: plain HTTP is refused for the API itself.
	e := startAPI(t, func(o *api.Options) { o.AllowPlainHTTP = false })
	if r := e.do("GET", "/api/v1/keys", "", nil); r.Status != 403 || r.code(t) != "https_required" {
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
	spec.json(t, &doc)
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
	return regexp.MustCompile(`\{[a-z_]+\}`).ReplaceAllString(p, ":id")
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
		{"OperationStatus", enumOf(t, schemas["OperationStatus"]), sorted(store.OpStatuses)},
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
