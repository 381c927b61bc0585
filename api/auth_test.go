package api_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// concrete fills a route pattern's :id with a well-formed id of the right
// kind that exists nowhere.
func concrete(path string) string {
	prefix := map[string]string{"keys": "key", "instances": "inst", "operations": "op", "webhooks": "wh"}
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") && i > 0 {
			parts[i] = prefix[parts[i-1]] + "_0000000000000000nope"
		}
	}
	out := strings.Join(parts, "/")
	if strings.HasSuffix(out, "/events/stream") {
		// A stream lasts as long as its client: a forged cursor makes it
		// answer (400) once authentication, plan and scope have passed.
		out += "?after=none"
	}
	return out
}

func bodyFor(method string) any {
	if method == http.MethodPost || method == http.MethodPatch {
		return "{}"
	}
	return nil
}

// TestEveryRouteRefusesBadTokens: every authenticated route × every kind of
// bad token → 401 with WWW-Authenticate, and the bad token is never logged.
func TestEveryRouteRefusesBadTokens(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	ctx := context.Background()
	acct, admin := e.account("business", apikey.PresetFull)

	good := e.key(acct)
	flipped := []byte(good)
	flipped[len(flipped)-1] ^= 1 // breaks the checksum
	unknown := apikey.Mint(apikey.NewKeyID(), testPepper).Plain

	revoked := e.key(acct)
	e.revoke(admin, revoked)
	rotated := e.key(acct)
	fresh := e.rotate(admin, rotated)
	if got := e.do("GET", "/api/v1/keys", fresh, nil); got.Status != 200 {
		t.Fatalf("rotated token refused: %d %s", got.Status, got.Body)
	}

	expiredTok := apikey.Mint(apikey.NewKeyID(), testPepper)
	past := time.Now().Add(-time.Minute)
	if _, err := store.InsertKey(ctx, e.st.DB, store.Key{ID: expiredTok.KeyID, AccountID: acct, Name: "old",
		Prefix: expiredTok.Prefix, SecretHash: expiredTok.Hash, Scopes: apikey.AllScopes, ExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}

	tokens := map[string]string{
		"missing":        "",
		"garbage":        "garbage",
		"wrong checksum": string(flipped),
		"unknown":        unknown,
		"revoked":        revoked,
		"rotated away":   rotated,
		"expired":        expiredTok.Plain,
	}
	routes := e.srv.Routes()
	if len(routes) < 4 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	for _, rt := range routes {
		for kind, tok := range tokens {
			got := e.do(rt.Method, concrete(rt.Path), tok, bodyFor(rt.Method))
			if got.Status != http.StatusUnauthorized || got.Code(t) != "unauthorized" {
				t.Errorf("%s %s with %s token: %d %s, want 401 unauthorized", rt.Method, rt.Path, kind, got.Status, got.Body)
			}
			if !strings.HasPrefix(got.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %s token: no WWW-Authenticate", rt.Method, rt.Path, kind)
			}
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"status":401`) {
		t.Fatal("the access log recorded no refused request; the log check below would prove nothing")
	}
	for kind, tok := range tokens {
		if len(tok) > 8 && strings.Contains(logs, tok) {
			t.Errorf("the %s token appears in the log", kind)
		}
	}
	for _, tok := range []string{admin, good, fresh} {
		_, secret, _ := apikey.Parse(tok)
		if strings.Contains(logs, secret) {
			t.Error("a secret appears in the log")
		}
	}
}

// TestEveryScopeOnEveryRoute: a key holding one scope passes exactly the
// routes of that scope; the others answer 403 insufficient_scope naming it.
func TestEveryScopeOnEveryRoute(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, _ := e.account("business", apikey.PresetFull)
	for _, scope := range apikey.AllScopes {
		tok := e.key(acct, scope)
		for _, rt := range e.srv.Routes() {
			got := e.do(rt.Method, concrete(rt.Path), tok, bodyFor(rt.Method))
			if rt.Scope == scope {
				if got.Status == 401 || got.Status == 403 || got.Status >= 500 {
					t.Errorf("%s %s with %s: %d %s, want access", rt.Method, rt.Path, scope, got.Status, got.Body)
				}
				continue
			}
			if got.Status != 403 || got.Code(t) != "insufficient_scope" || !strings.Contains(string(got.Body), rt.Scope) {
				t.Errorf("%s %s with %s: %d %s, want 403 insufficient_scope naming %s", rt.Method, rt.Path, scope, got.Status, got.Body, rt.Scope)
			}
		}
	}
}

func TestFreePlanHasNoAPIAccess(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("free", apikey.PresetFull)
	for _, rt := range e.srv.Routes() {
		got := e.do(rt.Method, concrete(rt.Path), tok, bodyFor(rt.Method))
		if got.Status != 403 || got.Code(t) != "plan_required" {
			t.Errorf("%s %s on free plan: %d %s, want 403 plan_required", rt.Method, rt.Path, got.Status, got.Body)
		}
	}
}

func TestKeysLifecycle(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, admin := e.account("pro", apikey.PresetFull)

	// Create: the token is shown once, with the key object.
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	r := e.do("POST", "/api/v1/keys", admin, map[string]any{"name": "ci", "scopes": []string{"read-only"}, "expires_at": exp})
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var created struct {
		ID, Name, Prefix, Token string
		Scopes                  []string
		ExpiresAt               *time.Time `json:"expires_at"`
	}
	r.JSON(t, &created)
	if !strings.HasPrefix(created.ID, "key_") || !strings.HasPrefix(created.Token, created.Prefix+"_") || len(created.Scopes) != 7 {
		t.Fatalf("created = %+v", created)
	}
	if created.ExpiresAt == nil || !created.ExpiresAt.Equal(exp) {
		t.Fatalf("expires_at = %v, want %v", created.ExpiresAt, exp)
	}
	// The new key reads but cannot write.
	if r := e.do("GET", "/api/v1/keys", created.Token, nil); r.Status != 200 {
		t.Fatalf("list with read-only key: %d", r.Status)
	}
	if r := e.do("POST", "/api/v1/keys", created.Token, map[string]any{"name": "x", "scopes": []string{"keys:read"}}); r.Status != 403 {
		t.Fatalf("create with read-only key: %d", r.Status)
	}
	// Listing never shows a secret, a token or a hash.
	r = e.do("GET", "/api/v1/keys", admin, nil)
	var list []map[string]any
	r.JSON(t, &list)
	if len(list) != 2 {
		t.Fatalf("list = %s", r.Body)
	}
	for _, k := range list {
		for field := range k {
			switch field {
			case "id", "name", "prefix", "scopes", "created_at", "last_used_at", "expires_at":
			default:
				t.Errorf("key object has field %q", field)
			}
		}
	}
	assertNoSecrets(t, e, r.Body, admin, created.Token)

	// A key never mints a scope it lacks.
	_, limited := e.account("pro", "keys:write", "instance:read")
	r = e.do("POST", "/api/v1/keys", limited, map[string]any{"name": "x", "scopes": []string{"full"}})
	if r.Status != 403 || r.Code(t) != "insufficient_scope" {
		t.Fatalf("escalation: %d %s", r.Status, r.Body)
	}
	if r = e.do("POST", "/api/v1/keys", limited, map[string]any{"name": "x", "scopes": []string{"instance:read"}}); r.Status != 201 {
		t.Fatalf("subset grant: %d %s", r.Status, r.Body)
	}

	// Bad input is a 400 that says what is wrong.
	for name, body := range map[string]any{
		"malformed":     `{"name":`,
		"unknown field": `{"name":"x","scopes":["full"],"admin":true}`,
		"no scopes":     `{"name":"x"}`,
		"bad scope":     `{"name":"x","scopes":["instance:fly"]}`,
		"past expiry":   `{"name":"x","scopes":["full"],"expires_at":"2001-01-01T00:00:00Z"}`,
		"no name":       `{"scopes":["full"]}`,
		"empty":         ``,
		"wrong type":    `{"name":3,"scopes":["full"]}`,
	} {
		r := e.do("POST", "/api/v1/keys", admin, body)
		if r.Status != 400 || r.Code(t) != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, r.Status, r.Body)
		}
	}
	big := `{"name":"` + strings.Repeat("x", 1<<20) + `","scopes":["full"]}`
	if r := e.do("POST", "/api/v1/keys", admin, big); r.Status != 413 || r.Code(t) != "payload_too_large" {
		t.Errorf("1 MiB body: %d %s", r.Status, r.Body)
	}
}

// TestKeysAreTenantIsolated: account 2's key ids are 404 for account 1.
func TestKeysAreTenantIsolated(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok1 := e.account("pro")
	_, tok2 := e.account("pro")
	id2, _, _ := apikey.Parse(tok2)
	unknown := "key_0000000000000000"
	for _, path := range []string{"/api/v1/keys/" + id2 + "/rotate", "/api/v1/keys/" + unknown + "/rotate"} {
		r := e.do("POST", path, tok1, nil)
		if r.Status != 404 || r.Code(t) != "not_found" {
			t.Errorf("POST %s: %d %s", path, r.Status, r.Body)
		}
	}
	a := e.do("DELETE", "/api/v1/keys/"+id2, tok1, nil)
	b := e.do("DELETE", "/api/v1/keys/"+unknown, tok1, nil)
	if a.Status != 404 || string(a.Body) != string(b.Body) {
		t.Errorf("foreign and unknown differ: %d %s vs %d %s", a.Status, a.Body, b.Status, b.Body)
	}
	var list []struct{ ID string }
	e.do("GET", "/api/v1/keys", tok1, nil).JSON(t, &list)
	for _, k := range list {
		if k.ID == id2 {
			t.Error("account 1 lists account 2's key")
		}
	}
	if r := e.do("GET", "/api/v1/keys", tok2, nil); r.Status != 200 {
		t.Errorf("account 2's key was revoked by account 1: %d", r.Status)
	}
}

func TestLastUsedIsRecordedOffThePath(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	acct, tok := e.account("pro")
	kid, _, _ := apikey.Parse(tok)
	if r := e.do("GET", "/api/v1/keys", tok, nil); r.Status != 200 {
		t.Fatal(r.Status)
	}
	testenv.Eventually(t, "last_used_at to be flushed", func() bool {
		k, err := store.GetKey(context.Background(), e.st.DB, acct, kid)
		return err == nil && k.LastUsedAt != nil
	})
}

func TestTransport(t *testing.T) {
	t.Parallel()
	st := startAPI(t) // for its database and Redis
	_, tok := st.account("pro")
	strict := startAPIOn(t, st.st, st.redis, func(o *api.Options) {
		o.AllowPlainHTTP = false
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	r := strict.do("GET", "/api/v1/keys", tok, nil)
	if r.Status != 403 || r.Code(t) != "https_required" || !strings.Contains(string(r.Body), "HTTPS is required") {
		t.Errorf("plain HTTP: %d %s", r.Status, r.Body)
	}
	// The client is not a trusted proxy, so its header is not believed.
	if r := strict.do("GET", "/api/v1/keys", tok, nil, "X-Forwarded-Proto", "https"); r.Status != 403 {
		t.Errorf("forged X-Forwarded-Proto: %d", r.Status)
	}
	if r := strict.do("GET", "/healthz", "", nil); r.Status != 200 {
		t.Errorf("healthz over plain HTTP: %d", r.Status)
	}

	proxied := startAPIOn(t, st.st, st.redis, func(o *api.Options) {
		o.AllowPlainHTTP = false
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	if r := proxied.do("GET", "/api/v1/keys", tok, nil, "X-Forwarded-Proto", "https"); r.Status != 200 {
		t.Errorf("trusted proxy said https: %d %s", r.Status, r.Body)
	}

	// Served over TLS, the same strict server accepts the call.
	rc := st.redis.Client()
	srv := api.New(api.Options{Store: st.st, Redis: rc, Limiter: ratelimit.New(rc, ratelimit.Options{Prefix: "tls:"}), Pepper: testPepper,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ts := httptest.NewTLSServer(srv.Handler())
	defer ts.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("over TLS: %d", res.StatusCode)
	}
}

// assertNoSecrets fails when body holds a secret or its hash in any common
// encoding.
func assertNoSecrets(t *testing.T, e *apiEnv, body []byte, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		_, secret, _ := apikey.Parse(tok)
		h := apikey.Hash(testPepper, secret)
		for _, s := range []string{secret, hex.EncodeToString(h), base64.StdEncoding.EncodeToString(h)} {
			if strings.Contains(string(body), s) {
				t.Errorf("response holds a secret or hash: %s", body)
			}
		}
	}
}

// TestFailedAuthFloodIsCutOff: once an address spent its failed-auth
// allowance it gets 429 with Retry-After, even with a good token, until the
// allowance refills; other addresses are unaffected (their own bucket).
func TestFailedAuthFloodIsCutOff(t *testing.T) {
	t.Parallel()
	e := startAPI(t, func(o *api.Options) { o.FailedAuthsPerMinute = 5 })
	_, good := e.account("pro")
	bad := apikey.Mint(apikey.NewKeyID(), testPepper).Plain
	var last *response
	for i := 0; i < 7; i++ {
		last = e.do("GET", "/api/v1/keys", bad, nil)
	}
	if last.Status != 429 || last.Code(t) != "rate_limited" || last.Header.Get("Retry-After") == "" {
		t.Fatalf("after 7 bad tokens: %d %s", last.Status, last.Body)
	}
	if r := e.do("GET", "/api/v1/keys", good, nil); r.Status != 429 {
		t.Fatalf("blocked address with a good token: %d", r.Status)
	}
}
