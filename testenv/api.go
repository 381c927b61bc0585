package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/store"
)

// The pieces below are what the api tests (api/harness_test.go) and the
// end-to-end System (e2e/harness.go) both need to talk to an api: a
// customer with a key, a request, its answer. What they do not share is
// in CONTRIBUTING.md.

// NewAccount creates an account on plan with one key holding scopes (names
// or presets; none: every scope), its token minted with pepper, and
// answers the account's id and the token.
func NewAccount(t testing.TB, db sqlx.ExtContext, pepper []byte, plan string, scopes ...string) (accountID, token string) {
	t.Helper()
	a, err := store.CreateAccount(context.Background(), db, strings.ToLower(apikey.NewKeyID())+"@example.com", plan)
	if err != nil {
		t.Fatalf("testenv: create account: %v", err)
	}
	return a.ID, NewKey(t, db, pepper, a.ID, scopes...)
}

// NewKey adds a key with scopes (names or presets; none: every scope) to
// an account and answers its token, minted with pepper.
func NewKey(t testing.TB, db sqlx.ExtContext, pepper []byte, accountID string, scopes ...string) string {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{apikey.PresetFull}
	}
	expanded, err := apikey.Expand(scopes)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tok := apikey.Mint(apikey.NewKeyID(), pepper)
	if _, err := store.InsertKey(context.Background(), db, store.Key{
		ID: tok.KeyID, AccountID: accountID, Name: "test", Prefix: tok.Prefix, SecretHash: tok.Hash, Scopes: expanded,
	}); err != nil {
		t.Fatalf("testenv: insert key: %v", err)
	}
	return tok.Plain
}

// Response is one answer of the api.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test if it cannot.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Code is the "code" of an error answer.
func (r *Response) Code(t testing.TB) string {
	t.Helper()
	var e struct {
		Code string `json:"code"`
	}
	r.JSON(t, &e)
	return e.Code
}

// NewRequest builds a request to url as a customer's script sends it:
// token (if any) as a bearer token, body marshalled unless it is a string
// or []byte (sent as is, as JSON), headers as name, value pairs.
func NewRequest(t testing.TB, method, url, token string, body any, headers ...string) *http.Request {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

// Send sends req with c and reads the whole answer, failing the test if
// either cannot be done.
func Send(t testing.TB, c *http.Client, req *http.Request) *Response {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("testenv: %s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("testenv: read %s %s: %v", req.Method, req.URL.Path, err)
	}
	return &Response{Status: res.StatusCode, Header: res.Header, Body: b}
}
