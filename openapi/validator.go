package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
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
type Validator struct {
	doc    *openapi3.T
	router routers.Router
}

// NewValidator loads the document and builds the route table it validates by.
func NewValidator() (*Validator, error) {
	registerDecoders()
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
	return &Validator{doc: doc, router: router}, nil
}

// Document answers the loaded document; callers must not change it.
func (v *Validator) Document() *openapi3.T { return v.doc }

// ValidateResponse checks one answer to req: the route and method must be
// in the document, the status must be one the operation lists, every
// header the document requires must be present and well-formed, and the
// body must match the schema (response objects forbid properties they do
// not name, so a renamed or added field fails). A path the document does
// not know must have been answered 404 not_found, and a method it does not
// list for a known path 405 method_not_allowed, each with the error shape:
// a route that answers anything else is missing from the document.
func (v *Validator) ValidateResponse(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := v.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return checkUnrouted(req, status, http.StatusNotFound, "not_found", header, body)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return checkUnrouted(req, status, http.StatusMethodNotAllowed, "method_not_allowed", header, body)
	case err != nil:
		return fmt.Errorf("openapi: %s %s: %w", req.Method, req.URL.Path, err)
	}
	resp := route.Operation.Responses.Status(status)
	if resp == nil {
		return fmt.Errorf("openapi: %s %s answered %d, a status the document does not list for %s", req.Method, req.URL.Path, status, route.Operation.OperationID)
	}
	if len(resp.Value.Content) == 0 && len(body) > 0 {
		return fmt.Errorf("openapi: %s %s answered %d with a body, where the document has none", req.Method, req.URL.Path, status)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route:      route,
		},
		Status: status,
		Header: header,
		Body:   io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
		},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("openapi: %s %s → %d (%s): %w", req.Method, req.URL.Path, status, route.Operation.OperationID, err)
	}
	return nil
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

// registerDecoders teaches openapi3filter the media types the document
// uses beyond JSON, once per process (its registry is global).
var registerDecoders = sync.OnceFunc(func() {
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
})

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
