package api_test

// Native fuzz tests (issue 12) of everything the api parses from an
// untrusted caller: the JSON body of every route, cursors, tokens,
// Idempotency-Key values and time and date parameters. Each asserts, for
// every answer, the property the contract promises: never a 5xx, errors in
// the {"error","code"} shape, and no secret, SQL or stack text in any
// answer. Their seed corpora (testdata/fuzz/<Name>/) run with the normal
// `go test`; `make fuzz` runs each target for a while.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/webhook"
)

// fuzzSecretKey seals webhook secrets in the fuzzed api; no answer may
// contain it.
const fuzzSecretKey = "fuzz-secret-key-must-never-leak-0123"

// fuzzEnv is one api on real Postgres and Redis, shared by the iterations
// of one fuzz target in one process, with a resource of each kind so that
// the routes with an id reach their handlers.
type fuzzEnv struct {
	*apiEnv
	tok      string
	ids      map[string]string // route parameter → a real id of the account
	requests atomic.Int64
	// redis flushes the rate-limit buckets; made before the fuzzing,
	// since a fuzz target may not register cleanups with the F.
	redis *redis.Client
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	f.Helper()
	box, err := webhook.SecretBoxFromString(fuzzSecretKey)
	if err != nil {
		f.Fatal(err)
	}
	// Private webhook URLs are allowed so that no iteration waits on DNS;
	// webhook/fuzz_test.go fuzzes the address guard itself.
	e := startAPI(f, func(o *api.Options) { o.SecretBox = box; o.WebhookAllowPrivate = true })
	acct, tok := e.account("business", "full")
	fe := &fuzzEnv{apiEnv: e, tok: tok, ids: map[string]string{}, redis: e.redis.Client()}
	ctx := context.Background()
	instID := id.New(id.Instance)
	if _, err := store.InsertInstance(ctx, e.st.DB, instID, acct, "fuzz-"+strings.ToLower(id.Random(8)), "iad", store.StatusRunning); err != nil {
		f.Fatal(err)
	}
	fe.ids[":id/instances"] = instID
	victim, _ := e.keyWith(acct, nil, "read-only")
	fe.ids[":id/keys"] = victim
	w := fe.serve("POST", "/api/v1/webhooks", `{"url":"http://127.0.0.1:9/hook","events":["webhook.test"]}`)
	var wh struct{ ID string }
	if err := json.Unmarshal(w.Body.Bytes(), &wh); err != nil || wh.ID == "" {
		f.Fatalf("webhook: %d %s", w.Code, w.Body)
	}
	fe.ids[":id/webhooks"] = wh.ID
	var op struct{ ID string }
	w = fe.serve("POST", "/api/v1/instances/"+instID+"/restart", "")
	if err := json.Unmarshal(w.Body.Bytes(), &op); err != nil || op.ID == "" {
		f.Fatalf("restart: %d %s", w.Code, w.Body)
	}
	fe.ids[":id/operations"] = op.ID
	return fe
}

// serve sends one request through the api's handler in process; headers
// are name, value pairs.
func (fe *fuzzEnv) serve(method, target, body string, headers ...string) *httptest.ResponseRecorder {
	// The rate limits would soon answer every iteration with a 429 and
	// hide the handlers: start the buckets afresh now and then.
	if fe.requests.Add(1)%200 == 0 {
		fe.redis.FlushDB(context.Background())
	}
	req := httptest.NewRequest(method, "http://mocd.test/", strings.NewReader(body))
	req.URL = &url.URL{Path: target}
	if p, q, ok := strings.Cut(target, "?"); ok {
		req.URL = &url.URL{Path: p, RawQuery: q}
	}
	req.RequestURI = req.URL.RequestURI()
	req.Header.Set("Authorization", "Bearer "+fe.tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	fe.srv.Handler().ServeHTTP(w, req)
	return w
}

// leakMarkers are texts no answer may contain unless the caller sent them:
// Postgres's and Go's own words, and the server's secrets.
var leakMarkers = []string{
	"pq: ", "SQLSTATE", "syntax error at or near", "violates ", "duplicate key value",
	"goroutine ", ".go:", "panic", "runtime error",
	string(testPepper), fuzzSecretKey,
}

// checkAnswer asserts the contract's property of every answer.
func (fe *fuzzEnv) checkAnswer(t *testing.T, w *httptest.ResponseRecorder, sent ...string) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	body := w.Body.String()
	input := strings.Join(sent, "\x00")
	for _, m := range append(leakMarkers, fe.tok) {
		if strings.Contains(body, m) && !strings.Contains(input, m) {
			t.Fatalf("the answer contains %q: %s", m, body)
		}
	}
	if w.Code >= 400 {
		var e struct {
			Error *string `json:"error"`
			Code  *string `json:"code"`
		}
		dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || e.Error == nil || e.Code == nil || *e.Error == "" || *e.Code == "" {
			t.Fatalf("%d answer not in the error shape: %s", w.Code, body)
		}
	}
}

// FuzzRouteBodies sends any body, with or without an Idempotency-Key, to
// every route that changes something.
func FuzzRouteBodies(f *testing.F) {
	for _, seed := range []string{
		`{"name":"ci","scopes":["read-only"]}`, `{"name":"ci","scopes":"write"}`,
		`{"name":"a\u0000b","scopes":["full"],"expires_at":"2999-01-01T00:00:00+23:59"}`,
		`{"subdomain":"my-app","fly_region":"iad"}`, `{"subdomain":null}`,
		`{"url":"http://127.0.0.1:9/x","events":["operation.succeeded"]}`, `{"enabled":false}`,
		`{"events":[]}`, `{"value":"sk-123"}`, `{"version":"1.2.3"}`, `[]`, `null`, `{`, ``,
		`{"name":"x","scopes":[1,2]}`, `{"name":"` + strings.Repeat("é", 101) + `","scopes":["full"]}`,
	} {
		for r := range 8 {
			f.Add(uint8(r), []byte(seed), "")
		}
	}
	f.Add(uint8(0), []byte(`{"name":"x","scopes":["full"]}`), `"quoted\"key"`)
	fe := newFuzzEnv(f)
	var routes []api.Route
	for _, rt := range fe.srv.Routes() {
		if rt.Method != http.MethodGet {
			routes = append(routes, rt)
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte, idemKey string) {
		rt := routes[int(route)%len(routes)]
		path := fe.fillPath(rt.Path)
		var headers []string
		if idemKey != "" && !strings.ContainsAny(idemKey, "\r\n\x00") {
			headers = []string{"Idempotency-Key", idemKey}
		}
		w := fe.serve(rt.Method, path, string(body), headers...)
		fe.checkAnswer(t, w, string(body), idemKey, path)
	})
}

// fillPath puts a real id of the fuzzed account into a route template.
func (fe *fuzzEnv) fillPath(tmpl string) string {
	parts := strings.Split(tmpl, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") && i > 0 {
			if v, ok := fe.ids[p+"/"+parts[i-1]]; ok {
				parts[i] = v
			} else {
				parts[i] = "SOME_NAME"
			}
		}
	}
	return strings.Join(parts, "/")
}

// FuzzCursors sends any cursor to every cursor-paged list.
func FuzzCursors(f *testing.F) {
	for _, seed := range []string{"", "forged", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"____________________________________________", "%00", "=", strings.Repeat("A", 5000)} {
		for l := range 5 {
			f.Add(uint8(l), seed)
		}
	}
	fe := newFuzzEnv(f)
	lists := []string{
		"/api/v1/operations?cursor=", "/api/v1/logs?cursor=", "/api/v1/events?after=",
		"/api/v1/instances/" + fe.ids[":id/instances"] + "/events?cursor=",
		"/api/v1/webhooks/" + fe.ids[":id/webhooks"] + "/deliveries?cursor=",
	}
	f.Fuzz(func(t *testing.T, list uint8, cursor string) {
		target := lists[int(list)%len(lists)] + url.QueryEscape(cursor)
		w := fe.serve("GET", target, "")
		fe.checkAnswer(t, w, cursor)
		if w.Code != 200 && w.Code != 400 && w.Code != 404 && w.Code != 410 && w.Code != 429 {
			t.Fatalf("a cursor answered %d %s", w.Code, w.Body)
		}
	})
}

// FuzzTokens sends any Authorization header: a 401 with WWW-Authenticate
// unless it is the account's own token.
func FuzzTokens(f *testing.F) {
	for _, seed := range []string{"", "Bearer ", "Bearer moc_", "Basic dXNlcjpwdw==", "bearer moc_AAAAAAAAAAAAAAAA_" + strings.Repeat("b", 36),
		"Bearer moc_key_pgbench_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "Bearer \x00", "Bearer " + strings.Repeat("moc_", 100)} {
		f.Add(seed)
	}
	fe := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, auth string) {
		if strings.ContainsAny(auth, "\r\n") {
			return // not a header value a client can send
		}
		req := httptest.NewRequest("GET", "/api/v1/account", nil)
		req.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		fe.srv.Handler().ServeHTTP(w, req)
		fe.checkAnswer(t, w, auth)
		if strings.Contains(auth, fe.tok) {
			return
		}
		if w.Code != 401 && w.Code != 429 {
			t.Fatalf("Authorization %q: %d %s", auth, w.Code, w.Body)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Fatal("a 401 without WWW-Authenticate")
		}
	})
}

// FuzzIdempotencyKeys sends any Idempotency-Key twice: the first answer is
// stored or the key refused with 400, the second is the replay or the same
// refusal.
func FuzzIdempotencyKeys(f *testing.F) {
	for _, seed := range []string{"a", `""`, `"a\"b"`, `"a\qb"`, strings.Repeat("k", 255), strings.Repeat("k", 256), "clé", " spaced ", "\x7f", `"\\"`} {
		f.Add(seed)
	}
	fe := newFuzzEnv(f)
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, key string) {
		if strings.ContainsAny(key, "\r\n\x00") {
			return // not a header value a client can send
		}
		body := `{"name":"fuzz-` + strings.Repeat("x", int(n.Add(1)%7)) + `","scopes":["read-only"]}`
		first := fe.serve("POST", "/api/v1/keys", body, "Idempotency-Key", key)
		fe.checkAnswer(t, first, key, body)
		again := fe.serve("POST", "/api/v1/keys", body, "Idempotency-Key", key)
		fe.checkAnswer(t, again, key, body)
		switch {
		case first.Code == 400:
			if again.Code != 400 {
				t.Fatalf("refused key %q accepted the second time: %d", key, again.Code)
			}
		case first.Code == 201:
			// Replayed, or (a key used in an earlier iteration with another
			// body) refused as reused; never a second key.
			if again.Code == 201 && !bytes.Equal(first.Body.Bytes(), again.Body.Bytes()) {
				t.Fatalf("key %q created two keys", key)
			}
		}
	})
}

// FuzzTimeParameters sends any value to every time and date parameter.
func FuzzTimeParameters(f *testing.F) {
	for _, seed := range []string{"", "2025-01-31", "0001-01-01", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59",
		"2020-01-01T00:00:00+16:00", "2020-02-30", "yesterday", "2020-01-01T00:00:00.123456789Z", "+275760-09-13"} {
		for p := range 7 {
			f.Add(uint8(p), seed)
		}
	}
	fe := newFuzzEnv(f)
	params := []string{
		"/api/v1/logs?from=", "/api/v1/logs?to=", "/api/v1/operations?created_after=", "/api/v1/operations?created_before=",
		"/api/v1/usage?from=", "/api/v1/usage?to=", "/api/v1/usage?from=2025-01-01&to=",
	}
	f.Fuzz(func(t *testing.T, param uint8, v string) {
		target := params[int(param)%len(params)] + url.QueryEscape(v)
		w := fe.serve("GET", target, "")
		fe.checkAnswer(t, w, v)
	})
}
