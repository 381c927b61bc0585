package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestDocumentIsValidOpenAPI31(t *testing.T) {
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Paths.Len() < 20 {
		t.Errorf("only %d paths: the document lost some", doc.Paths.Len())
	}
}

// The JSON the server hands out must be the same document, in the same
// order (Redoc lists operations in document order).
func TestJSONIsTheSameDocumentInOrder(t *testing.T) {
	j, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := openapi3.NewLoader().LoadFromData(j)
	if err != nil {
		t.Fatalf("load the JSON: %v", err)
	}
	fromYAML, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(fromJSON)
	b, _ := json.Marshal(fromYAML)
	if !bytes.Equal(a, b) {
		t.Error("the JSON and the YAML load as different documents")
	}
	var top struct {
		Paths json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(j, &top); err != nil {
		t.Fatal(err)
	}
	first := strings.Index(string(top.Paths), `"/api/v1/instances"`)
	ops := strings.Index(string(top.Paths), `"/api/v1/operations"`)
	health := strings.Index(string(top.Paths), `"/healthz"`)
	if first != 1 || ops < first || health < ops {
		t.Errorf("paths out of document order: instances at %d, operations at %d, healthz at %d", first, ops, health)
	}
	if !strings.Contains(string(j), `"const":"true"`) || !strings.Contains(string(j), `"maximum":200`) {
		t.Error("scalar types were not kept: a quoted 'true' must stay a string and 200 a number")
	}
}

// openSchemas may carry properties they do not name: the document itself,
// and an event envelope's data, which depends on the event type.
var openSchemas = map[string]bool{
	"GET /api/v1/openapi.json 200":       true,
	"GET /api/v1/openapi.json 200.info":  true,
	"GET /api/v1/openapi.json 200.paths": true,
	"EventEnvelope.data":                 true,
}

// Every object in every response must be closed (additionalProperties:
// false), so that a renamed or added field fails validation.
func TestResponseObjectsAreClosed(t *testing.T) {
	doc, err := sharedDoc()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*openapi3.Schema]bool{}
	var check func(where string, s *openapi3.SchemaRef)
	check = func(where string, s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil || seen[s.Value] {
			return
		}
		if s.Ref != "" {
			where = strings.TrimPrefix(s.Ref, "#/components/schemas/")
		}
		v := s.Value
		seen[v] = true
		if v.Type.Is(openapi3.TypeObject) && !openSchemas[where] {
			closed := v.AdditionalProperties.Has != nil && !*v.AdditionalProperties.Has
			if !closed {
				t.Errorf("%s: an object in a response without additionalProperties: false", where)
			}
		}
		for name, p := range v.Properties {
			check(where+"."+name, p)
		}
		check(where+"[]", v.Items)
		for i, sub := range slices.Concat(v.AllOf, v.OneOf, v.AnyOf) {
			check(fmt.Sprintf("%s/%d", where, i), sub)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, r := range op.Responses.Map() {
				for _, mt := range r.Value.Content {
					check(method+" "+path+" "+status, mt.Schema)
				}
			}
		}
	}
}

// Every operation names the one scope it needs, in the security
// requirement, in x-required-scopes and in its description; public ones
// say so with an empty security list.
func TestEveryOperationStatesItsScope(t *testing.T) {
	doc, err := sharedDoc()
	if err != nil {
		t.Fatal(err)
	}
	public := []string{"GET /api/v1/openapi.json", "GET /docs", "GET /healthz", "GET /readyz", "GET /metrics"}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if slices.Contains(public, name) {
				if op.Security == nil || len(*op.Security) != 0 {
					t.Errorf("%s: a public route must say security: []", name)
				}
				continue
			}
			scope, ok := RequiredScope(op)
			if !ok {
				t.Errorf("%s: no single bearerAuth scope", name)
				continue
			}
			ext, _ := op.Extensions["x-required-scopes"].([]any)
			if len(ext) != 1 || ext[0] != scope {
				t.Errorf("%s: x-required-scopes %v, security says %s", name, ext, scope)
			}
			if !strings.Contains(op.Description, "Required scope: `"+scope+"`") {
				t.Errorf("%s: the description does not say \"Required scope: `%s`\"", name, scope)
			}
			if _, ok := op.Responses.Map()["401"]; !ok {
				t.Errorf("%s: an authenticated route must document 401", name)
			}
			switch method {
			case http.MethodPost, http.MethodPatch, http.MethodDelete:
				if op.Parameters.GetByInAndName("header", "Idempotency-Key") == nil {
					t.Errorf("%s: no Idempotency-Key parameter", name)
				}
				for _, status := range []string{"400", "409", "413", "422"} {
					if _, ok := op.Responses.Map()[status]; !ok {
						t.Errorf("%s: a write must document %s", name, status)
					}
				}
			}
		}
	}
}

// sharedDoc and sharedValidator spare each test a load of the document
// (a second under -race); the tests only read them.
var (
	sharedDoc       = sync.OnceValues(Load)
	sharedValidator = sync.OnceValues(NewValidator)
)

func newValidator(t *testing.T) *Validator {
	t.Helper()
	v, err := sharedValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rateHeaders are the headers every authenticated success carries.
func rateHeaders() http.Header {
	return http.Header{
		"Content-Type":          {"application/json; charset=utf-8"},
		"X-Request-Id":          {"req_sj4Rq0HcPEBGULjUrO8L"},
		"Ratelimit-Policy":      {`"key-minute";q=120;w=60, "key-hour";q=2000;w=3600, "account-minute";q=300;w=60`},
		"Ratelimit":             {`"key-minute";r=118;t=1`},
		"X-Ratelimit-Limit":     {"120"},
		"X-Ratelimit-Remaining": {"118"},
		"X-Ratelimit-Reset":     {"1795334912"},
	}
}

const instanceBody = `{"id":"inst_1L2mQKhvBh5qRMVRUR2g","subdomain":"my-claw","status":"running","plan":"pro","fly_region":"lhr","url":"https://my-claw.myopenclaw.ai","version":"2026.1.30","volume_gb":10,"created_at":"2026-11-22T08:08:30.43659Z","updated_at":"2026-11-22T08:08:37.424822Z"}`

const operationBody = `{"id":"op_vSJl4jqqxTnX2sLJNcnb","type":"instance.create","status":"pending","instance_id":"inst_1L2mQKhvBh5qRMVRUR2g","created_at":"2026-11-22T08:08:30.43659Z","started_at":null,"finished_at":null,"error":null}`

func TestValidatorAcceptsRealAnswers(t *testing.T) {
	v := newValidator(t)
	errHeader := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"req_1"}}
	accepted := rateHeaders()
	accepted.Set("Location", "/api/v1/operations/op_vSJl4jqqxTnX2sLJNcnb")
	replayed := accepted.Clone()
	replayed.Set("Idempotent-Replayed", "true")
	unauthorized := errHeader.Clone()
	unauthorized.Set("Www-Authenticate", `Bearer realm="mocd"`)
	noContent := rateHeaders()
	noContent.Del("Content-Type")
	for _, c := range []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
	}{
		{"instance", "GET", "/api/v1/instances/inst_1L2mQKhvBh5qRMVRUR2g", 200, rateHeaders(), instanceBody},
		{"instance list", "GET", "/api/v1/instances", 200, rateHeaders(), "[" + instanceBody + "]"},
		{"accepted", "POST", "/api/v1/instances/inst_1/restart", 202, accepted, operationBody},
		{"replayed", "POST", "/api/v1/instances", 202, replayed, operationBody},
		{"revoked", "DELETE", "/api/v1/keys/key_1", 204, noContent, ""},
		{"not found", "GET", "/api/v1/operations/op_nope", 404, errHeader, `{"error":"no such resource","code":"not_found"}`},
		{"unauthorized", "GET", "/api/v1/operations", 401, unauthorized, `{"error":"missing API token","code":"unauthorized"}`},
		{"cursor", "GET", "/api/v1/operations?cursor=x", 400, errHeader, `{"error":"bad cursor","code":"invalid_cursor"}`},
		{"unknown route", "GET", "/api/v1/nothing-here", 404, errHeader, `{"error":"no such resource","code":"not_found"}`},
		{"wrong method", "PUT", "/api/v1/instances", 405, errHeader, `{"error":"method PUT is not allowed here","code":"method_not_allowed"}`},
		{"health", "GET", "/healthz", 200, errHeader, `{"status":"ok"}`},
		{"metrics", "GET", "/metrics", 200, http.Header{"Content-Type": {"text/plain; version=0.0.4; charset=utf-8"}, "X-Request-Id": {"r"}}, "# HELP x\n"},
		{"docs", "GET", "/docs", 200, http.Header{"Content-Type": {"text/html; charset=utf-8"}, "X-Request-Id": {"r"}}, "<!DOCTYPE html>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "http://127.0.0.1:8080"+c.path, nil)
			if err := v.ValidateResponse(req, c.status, c.header, []byte(c.body)); err != nil {
				t.Error(err)
			}
		})
	}
}

// Each case is a way the code can drift from the document; each must fail.
func TestValidatorRefusesDrift(t *testing.T) {
	v := newValidator(t)
	errHeader := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"req_1"}}
	noRequestID := rateHeaders()
	noRequestID.Del("X-Request-Id")
	noRate := rateHeaders()
	noRate.Del("X-Ratelimit-Remaining")
	badReset := rateHeaders()
	badReset.Set("X-Ratelimit-Reset", "soon")
	noLocation := rateHeaders()
	for _, c := range []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		want               string // in the error
	}{
		{"renamed field", "GET", "/api/v1/instances/inst_1", 200, rateHeaders(), strings.Replace(instanceBody, `"subdomain"`, `"sub_domain"`, 1), "sub_domain"},
		{"added field", "GET", "/api/v1/instances/inst_1", 200, rateHeaders(), strings.Replace(instanceBody, `{`, `{"fly_app":"x",`, 1), "fly_app"},
		{"missing field", "GET", "/api/v1/instances/inst_1", 200, rateHeaders(), strings.Replace(instanceBody, `"plan":"pro",`, ``, 1), "plan"},
		{"wrong type", "GET", "/api/v1/operations/op_1", 200, rateHeaders(), strings.Replace(operationBody, `"started_at":null`, `"started_at":5`, 1), "started_at"},
		{"unknown enum value", "GET", "/api/v1/operations/op_1", 200, rateHeaders(), strings.Replace(operationBody, `"pending"`, `"queued"`, 1), "at '/status'"},
		{"undocumented status", "GET", "/api/v1/instances", 404, errHeader, `{"error":"no such resource","code":"not_found"}`, "does not list"},
		{"code of another status", "POST", "/api/v1/instances/inst_1/start", 409, errHeader, `{"error":"taken","code":"subdomain_taken"}`, "at '/code'"},
		{"error with a stack", "GET", "/api/v1/operations/op_1", 404, errHeader, `{"error":"x","code":"not_found","stack":"main.go:1"}`, "stack"},
		{"no request id", "GET", "/api/v1/instances/inst_1", 200, noRequestID, instanceBody, "X-Request-Id"},
		{"no rate-limit header", "GET", "/api/v1/instances/inst_1", 200, noRate, instanceBody, "X-RateLimit-Remaining"},
		{"malformed rate-limit header", "GET", "/api/v1/instances/inst_1", 200, badReset, instanceBody, "X-RateLimit-Reset"},
		{"202 without Location", "POST", "/api/v1/instances", 202, noLocation, operationBody, "Location"},
		{"429 without Retry-After", "GET", "/api/v1/instances", 429, errHeader, `{"error":"slow down","code":"rate_limited"}`, "Retry-After"},
		{"204 with a body", "DELETE", "/api/v1/keys/key_1", 204, rateHeaders(), `{}`, "with a body"},
		{"route missing from the document", "GET", "/api/v1/secrets", 200, rateHeaders(), `[]`, "not in the document"},
		{"method missing from the document", "PUT", "/api/v1/instances", 200, rateHeaders(), instanceBody, "method the document does not list"},
		{"wrong content type", "GET", "/api/v1/instances/inst_1", 200, func() http.Header { h := rateHeaders(); h.Set("Content-Type", "text/plain"); return h }(), instanceBody, "Content-Type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "http://127.0.0.1:8080"+c.path, nil)
			err := v.ValidateResponse(req, c.status, c.header, []byte(c.body))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error does not mention %q: %v", c.want, err)
			}
		})
	}
}

// The validator serves the e2e suite from many goroutines.
func TestValidatorConcurrentUse(t *testing.T) {
	v := newValidator(t)
	done := make(chan error, 8)
	for range 8 {
		go func() {
			var err error
			for range 50 {
				req := httptest.NewRequest("GET", "http://127.0.0.1/api/v1/instances", nil)
				if err = v.ValidateResponse(req, 200, rateHeaders(), []byte("["+instanceBody+"]")); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestRequiredScope(t *testing.T) {
	doc, err := sharedDoc()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if s, ok := RequiredScope(op); ok {
				got = append(got, method+" "+path+" "+s)
			}
		}
	}
	sort.Strings(got)
	if !slices.Contains(got, "DELETE /api/v1/instances/{instance_id} instance:delete") ||
		!slices.Contains(got, "GET /api/v1/instances/{instance_id}/events logs:read") {
		t.Errorf("scopes read from the document: %v", got)
	}
}
