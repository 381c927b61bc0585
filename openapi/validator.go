package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Load parses the document and validates it as OpenAPI 3.1 (kin-openapi
// checks 3.1 documents against JSON Schema 2020-12, with examples), so a
// document that loads here is one clients can load too.
func Load() (*openapi3.T, error) {
	return load(context.Background())
}

func load(ctx context.Context) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	loader.Context = ctx
	doc, err := loader.LoadFromData(document)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, fmt.Errorf("openapi: the document says openapi %s; it must be 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(ctx, openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("openapi: validate: %w", err)
	}
	return doc, nil
}

// Validator checks answers of the API against the document. It is safe for
// concurrent use.
//
// kin-openapi loads the document and finds the operation of a request;
// schemas are checked by santhosh-tekuri/jsonschema (JSON Schema 2020-12,
// the dialect of OpenAPI 3.1, with formats asserted), each compiled once
// from its place in the document. (kin-openapi's own response check
// recompiles every schema on every call for 3.1 documents: about 15 ms an
// answer under -race, enough to change the timing of the end-to-end tests.)
type Validator struct {
	doc    *openapi3.T
	router routers.Router

	mu       sync.Mutex // guards compiler and compiled
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema // by JSON pointer in the document
}

// docURL names the document for the schema compiler; nothing is fetched.
const docURL = "urn:mocd:openapi.json"

// NewValidator loads the document and builds the route table it validates by.
func NewValidator() (*Validator, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	// The document names the production and dev hosts; tests serve on any
	// loopback port, so routes are matched by path alone.
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: routes: %w", err)
	}
	j, err := JSON()
	if err != nil {
		return nil, err
	}
	tree, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, tree); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return &Validator{doc: doc, router: router, compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
}

// Document answers the loaded document; callers must not change it.
func (v *Validator) Document() *openapi3.T { return v.doc }

// schema answers the compiled schema at a JSON pointer of the document.
func (v *Validator) schema(pointer string) (*jsonschema.Schema, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.compiled[pointer]; ok {
		return s, nil
	}
	s, err := v.compiler.Compile(docURL + "#" + pointer)
	if err != nil {
		return nil, fmt.Errorf("compile the schema at %s: %w", pointer, err)
	}
	v.compiled[pointer] = s
	return s, nil
}

// ValidateResponse checks one answer to req: the route and method must be
// in the document, the status must be one the operation lists, every
// header the document requires must be present and every documented header
// well-formed, the Content-Type must be one the document lists and the
// body must match its schema (response objects forbid properties they do
// not name, so a renamed or added field fails). A path the document does
// not know must have been answered 404 not_found, and a method it does not
// list for a known path 405 method_not_allowed, each with the error shape:
// a route that answers anything else is missing from the document.
func (v *Validator) ValidateResponse(req *http.Request, status int, header http.Header, body []byte) error {
	route, _, err := v.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return checkUnrouted(req, status, http.StatusNotFound, "not_found", header, body)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return checkUnrouted(req, status, http.StatusMethodNotAllowed, "method_not_allowed", header, body)
	case err != nil:
		return fmt.Errorf("openapi: %s %s: %w", req.Method, req.URL.Path, err)
	}
	op := route.Operation
	if err := v.checkResponse(route.Path, req.Method, op, status, header, body); err != nil {
		return fmt.Errorf("openapi: %s %s → %d (%s): %w", req.Method, req.URL.Path, status, op.OperationID, err)
	}
	return nil
}

func (v *Validator) checkResponse(path, method string, op *openapi3.Operation, status int, header http.Header, body []byte) error {
	code := strconv.Itoa(status)
	ref := op.Responses.Value(code)
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("a status the document does not list")
	}
	base := "/paths/" + escape(path) + "/" + strings.ToLower(method) + "/responses/" + code
	if ref.Ref != "" {
		base = strings.TrimPrefix(ref.Ref, "#")
	}
	resp := ref.Value
	for _, name := range sortedKeys(resp.Headers) {
		h := resp.Headers[name]
		values := header.Values(name)
		if len(values) == 0 {
			if h.Value.Required {
				return fmt.Errorf("the required header %s is missing", name)
			}
			continue
		}
		ptr := base + "/headers/" + escape(name) + "/schema"
		if h.Ref != "" {
			ptr = strings.TrimPrefix(h.Ref, "#") + "/schema"
		}
		s, err := v.schema(ptr)
		if err != nil {
			return err
		}
		if err := s.Validate(values[0]); err != nil {
			return fmt.Errorf("header %s: %q: %w", name, values[0], err)
		}
	}

	if len(resp.Content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("an answer with a body, where the document has none")
		}
		return nil
	}
	ct := header.Get("Content-Type")
	got, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", ct, err)
	}
	var key string
	for k := range resp.Content {
		if mt, _, err := mime.ParseMediaType(k); err == nil && strings.EqualFold(mt, got) {
			key = k
		}
	}
	if key == "" {
		return fmt.Errorf("Content-Type %q is not one the document lists (%s)", ct, strings.Join(sortedKeys(resp.Content), ", "))
	}
	if resp.Content[key].Schema == nil {
		return nil
	}
	s, err := v.schema(base + "/content/" + escape(key) + "/schema")
	if err != nil {
		return err
	}
	var value any = string(body)
	if got == "application/json" {
		if value, err = jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
			return fmt.Errorf("the body is not JSON: %w", err)
		}
	}
	if err := s.Validate(value); err != nil {
		return fmt.Errorf("the body does not match the document: %w", err)
	}
	return nil
}

// escape makes a JSON pointer token (RFC 6901).
func escape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkUnrouted checks the answer to a request the document has no
// operation for: it must be the API's refusal, not a handler's answer.
func checkUnrouted(req *http.Request, status, wantStatus int, wantCode string, header http.Header, body []byte) error {
	what := "is not in the document"
	if wantStatus == http.StatusMethodNotAllowed {
		what = "is a method the document does not list for this path"
	}
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if status != wantStatus || dec.Decode(&e) != nil || e.Code != wantCode || e.Error == "" || header.Get("X-Request-Id") == "" {
		return fmt.Errorf("openapi: %s %s %s, yet it answered %d %s", req.Method, req.URL.Path, what, status, truncate(body, 200))
	}
	return nil
}

func truncate(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return append(b[:n:n], "…"...)
}

// SecurityScheme is the name of the bearer-token scheme in the document.
const SecurityScheme = "bearerAuth"

// RequiredScope answers the API-key scope an operation needs. OpenAPI 3.1
// lets a security requirement of any scheme list role names; the document
// lists exactly one scope per authenticated operation that way (and repeats
// it as x-required-scopes and in the description, for tools and readers
// that ignore roles of a bearer scheme). ok is false for a public operation.
func RequiredScope(op *openapi3.Operation) (scope string, ok bool) {
	if op.Security == nil || len(*op.Security) != 1 {
		return "", false
	}
	req := (*op.Security)[0]
	scopes, found := req[SecurityScheme]
	if !found || len(req) != 1 || len(scopes) != 1 {
		return "", false
	}
	return scopes[0], true
}

// OperationID answers the operationId of the document's operation for req,
// or "" when the document has none: tests use it to show that they
// exercised every operation.
func (v *Validator) OperationID(req *http.Request) string {
	route, _, err := v.router.FindRoute(req)
	if err != nil {
		return ""
	}
	return route.Operation.OperationID
}
