package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
)

// BenchmarkAuth measures the authentication step: a valid token costs an
// HMAC against its key's kept row ("valid"), or one Postgres round trip
// (key + plan) and an HMAC when the row is not kept ("valid-uncached", the
// key cache off); a random token fails its checksum with no I/O at all.
func BenchmarkAuth(b *testing.B) {
	e := startAPI(b)
	uncached := startAPIOn(b, e.st, e.redis, func(o *api.Options) { o.KeyCacheMaxAge = -1 })
	_, tok := e.account("pro")
	random := "moc_" + strings.Repeat("A", 16) + "_" + strings.Repeat("b", 36)
	known, _, err := apikey.Parse(tok)
	if err != nil {
		b.Fatal(err)
	}
	// Issue 12: an unknown key id must cost what a wrong secret costs
	// (compare the two lines: once ~27 µs apart).
	wrongSecret := apikey.Mint(known, testPepper).Plain
	unknownID := apikey.Mint(apikey.NewKeyID(), testPepper).Plain
	for _, bc := range []struct {
		name, token string
		srv         *api.Server
	}{
		{"valid", tok, e.srv}, {"valid-uncached", tok, uncached.srv}, {"bad-checksum", random, e.srv},
		{"wrong-secret", wrongSecret, e.srv}, {"unknown-key-id", unknownID, e.srv},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/api/v1/keys", nil)
			req.Header.Set("Authorization", "Bearer "+bc.token)
			for b.Loop() {
				err := bc.srv.Authenticate(req)
				if (err == nil) != strings.HasPrefix(bc.name, "valid") {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIdempotencyOverhead measures a whole POST /api/v1/keys through
// the middleware chain, without and with an Idempotency-Key (a fresh key
// each time: the claim, then the answer stored in the handler's
// transaction). Rate-limit buckets are reset now and then so the limiter
// stays in the path without refusing.
func BenchmarkIdempotencyOverhead(b *testing.B) {
	e := startAPI(b)
	_, tok := e.account("business", apikey.PresetFull)
	h := e.srv.Handler()
	rc := e.redis.Client()
	body := `{"name":"bench","scopes":["read-only"]}`
	for _, withKey := range []bool{false, true} {
		name := "without-key"
		if withKey {
			name = "with-key"
		}
		b.Run(name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if i%500 == 0 {
					rc.FlushDB(context.Background())
				}
				i++
				req := httptest.NewRequest("POST", "/api/v1/keys", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				if withKey {
					req.Header.Set("Idempotency-Key", name+strconv.Itoa(i))
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusCreated {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
