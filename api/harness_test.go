package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

var testPepper = []byte("test-pepper-0123456789")

// apiEnv is one api server on real Postgres and Redis, with its log lines
// captured so that tests can check what was logged.
type apiEnv struct {
	t     testing.TB
	st    *store.Store
	redis *testenv.Redis
	srv   *api.Server
	url   string
	logs  *testenv.Buffer
}

// startAPI runs an api on a fresh database and a private Redis. opts may
// adjust the Options before the server is built.
func startAPI(t testing.TB, opts ...func(*api.Options)) *apiEnv {
	t.Helper()
	st := testenv.Store(t)
	r := testenv.StartRedis(t)
	return startAPIOn(t, st, r, opts...)
}

// startAPIOn runs another api replica on the given database and Redis.
func startAPIOn(t testing.TB, st *store.Store, r *testenv.Redis, opts ...func(*api.Options)) *apiEnv {
	t.Helper()
	logs := &testenv.Buffer{}
	rc := r.Client()
	o := api.Options{
		Store:          st,
		Redis:          rc,
		Limiter:        ratelimit.New(rc, ratelimit.Options{Prefix: "test:rl:", Timeout: 5 * time.Second}),
		Pepper:         testPepper,
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AllowPlainHTTP: true,
		// The route × token matrices fail on purpose hundreds of times.
		FailedAuthsPerMinute: 100_000,
	}
	for _, f := range opts {
		f(&o)
	}
	srv := api.New(o)
	hs := httptest.NewServer(srv.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		hs.Close()
		if t.Failed() {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
					t.Log(line)
				}
			}
		}
	})
	return &apiEnv{t: t, st: st, redis: r, srv: srv, url: hs.URL, logs: logs}
}

// account creates an account on plan with one key holding scopes (a preset
// or scope names), and returns the account id and the key's token.
func (e *apiEnv) account(plan string, scopes ...string) (string, string) {
	e.t.Helper()
	ctx := context.Background()
	a, err := store.CreateAccount(ctx, e.st.DB, strings.ToLower(apikey.NewKeyID())+"@example.com", plan)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.ID, e.key(a.ID, scopes...)
}

// key adds a key with scopes to an account and returns its token.
func (e *apiEnv) key(accountID string, scopes ...string) string {
	e.t.Helper()
	if len(scopes) == 0 {
		scopes = []string{apikey.PresetFull}
	}
	expanded, err := apikey.Expand(scopes)
	if err != nil {
		e.t.Fatal(err)
	}
	tok := apikey.Mint(apikey.NewKeyID(), testPepper)
	if _, err := store.InsertKey(context.Background(), e.st.DB, store.Key{
		ID: tok.KeyID, AccountID: accountID, Name: "test", Prefix: tok.Prefix, SecretHash: tok.Hash, Scopes: expanded,
	}); err != nil {
		e.t.Fatal(err)
	}
	return tok.Plain
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// code is the error code of an error answer.
func (r *response) code(t testing.TB) string {
	var e struct{ Code string }
	r.json(t, &e)
	return e.Code
}

// do sends a request; headers are name, value pairs. body is marshalled
// unless it is a string or []byte, sent as is.
func (e *apiEnv) do(method, path, token string, body any, headers ...string) *response {
	e.t.Helper()
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
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return &response{Status: res.StatusCode, Header: res.Header, Body: b}
}
