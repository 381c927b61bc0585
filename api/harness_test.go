package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
			logs.LogProblems(t)
		}
	})
	return &apiEnv{t: t, st: st, redis: r, srv: srv, url: hs.URL, logs: logs}
}

// account creates an account on plan with one key holding scopes (a preset
// or scope names), and returns the account id and the key's token.
func (e *apiEnv) account(plan string, scopes ...string) (string, string) {
	e.t.Helper()
	return testenv.NewAccount(e.t, e.st.DB, testPepper, plan, scopes...)
}

// key adds a key with scopes to an account and returns its token.
func (e *apiEnv) key(accountID string, scopes ...string) string {
	e.t.Helper()
	return testenv.NewKey(e.t, e.st.DB, testPepper, accountID, scopes...)
}

// response is an answer of the api.
type response = testenv.Response

// do sends a request; headers are name, value pairs. body is marshalled
// unless it is a string or []byte, sent as is.
func (e *apiEnv) do(method, path, token string, body any, headers ...string) *response {
	e.t.Helper()
	return testenv.Send(e.t, http.DefaultClient, testenv.NewRequest(e.t, method, e.url+path, token, body, headers...))
}

// revoke revokes the key of token with admin's key.
func (e *apiEnv) revoke(admin, token string) {
	e.t.Helper()
	keyID, _, _ := apikey.Parse(token)
	if r := e.do("DELETE", "/api/v1/keys/"+keyID, admin, nil); r.Status != 204 {
		e.t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
}

// rotate rotates the key of token with admin's key and answers its new
// token.
func (e *apiEnv) rotate(admin, token string) string {
	e.t.Helper()
	keyID, _, _ := apikey.Parse(token)
	r := e.do("POST", "/api/v1/keys/"+keyID+"/rotate", admin, nil)
	if r.Status != 201 {
		e.t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	var fresh struct{ Token string }
	r.JSON(e.t, &fresh)
	return fresh.Token
}
