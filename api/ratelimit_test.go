package api_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/testenv"
)

// spend calls GET /keys with tok, alternating between the replicas, until
// the first 429, and returns how many calls passed and the 429.
func spend(t *testing.T, tok string, max int, replicas ...*apiEnv) (int, *response) {
	n, r, _ := spendTimed(t, tok, max, replicas...)
	return n, r
}

// within checks a GCRA count: a limit of rate per period admits its burst
// (= rate) at once and then one request per period/rate, so a spend that
// took elapsed admits rate plus at most the refills of that time. A limit
// that replicas did not share would admit about twice as much.
func within(t *testing.T, what string, passed, rate int, period, elapsed time.Duration) {
	t.Helper()
	refills := int(elapsed/(period/time.Duration(rate))) + 1
	if passed < rate || passed > rate+refills {
		t.Fatalf("%s passed %d in %v, want %d plus at most %d refills", what, passed, elapsed, rate, refills)
	}
}

func spendTimed(t *testing.T, tok string, max int, replicas ...*apiEnv) (int, *response, time.Duration) {
	t.Helper()
	start := time.Now()
	for i := 0; i < max; i++ {
		r := replicas[i%len(replicas)].do("GET", "/api/v1/keys", tok, nil)
		switch r.Status {
		case 200:
		case 429:
			return i, r, time.Since(start)
		default:
			t.Fatalf("call %d: %d %s", i, r.Status, r.Body)
		}
	}
	return max, nil, time.Since(start)
}

// TestRateLimitHoldsAcrossReplicas: two api processes on one Redis share a
// pro key's allowance exactly; the 429 says when to retry, and a retry then
// passes.
func TestRateLimitHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	a := startAPI(t)
	b := startAPIOn(t, a.st, a.redis)
	_, tok := a.account("pro")

	first := a.do("GET", "/api/v1/keys", tok, nil)
	for _, h := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if first.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if got := first.Header.Get("X-RateLimit-Limit"); got != "120" {
		t.Errorf("X-RateLimit-Limit = %s, want 120", got)
	}
	if !strings.Contains(first.Header.Get("RateLimit-Policy"), `"key-minute";q=120;w=60`) {
		t.Errorf("RateLimit-Policy = %s", first.Header.Get("RateLimit-Policy"))
	}

	passed, refused, elapsed := spendTimed(t, tok, 400, a, b)
	within(t, "a pro key across two replicas", passed+1, 120, time.Minute, elapsed)
	if refused.Code(t) != "rate_limited" {
		t.Fatalf("429 code = %s", refused.Code(t))
	}
	ra, err := strconv.Atoi(refused.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After = %q", refused.Header.Get("Retry-After"))
	}
	if refused.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("X-RateLimit-Remaining on 429 = %s", refused.Header.Get("X-RateLimit-Remaining"))
	}
	time.Sleep(time.Duration(ra) * time.Second)
	if r := b.do("GET", "/api/v1/keys", tok, nil); r.Status != 200 {
		t.Fatalf("after Retry-After: %d %s", r.Status, r.Body)
	}
}

// TestAccountCeilingStopsOtherKeys: pro allows 120/min per key but 300/min
// per account, so a third key is stopped by the account ceiling after 60.
func TestAccountCeilingStopsOtherKeys(t *testing.T) {
	t.Parallel()
	a := startAPI(t)
	b := startAPIOn(t, a.st, a.redis)
	acct, k1 := a.account("pro")
	k2, k3 := a.key(acct), a.key(acct)
	start := time.Now()
	n1, _ := spend(t, k1, 400, a, b)
	n2, _ := spend(t, k2, 400, a, b)
	n3, refused, _ := spendTimed(t, k3, 400, a, b)
	elapsed := time.Since(start)
	within(t, "three keys of one account", n1+n2+n3, 300, time.Minute, elapsed)
	if n3 >= 120 {
		t.Fatalf("key 3 passed %d: the account ceiling did not stop it", n3)
	}
	if !strings.Contains(refused.Header.Get("RateLimit"), "account-minute") {
		t.Errorf("RateLimit on the account refusal = %s", refused.Header.Get("RateLimit"))
	}
	// Another account is untouched.
	_, other := a.account("pro")
	if r := b.do("GET", "/api/v1/keys", other, nil); r.Status != 200 {
		t.Errorf("other account: %d", r.Status)
	}
}

func TestBusinessKeyHasHigherLimits(t *testing.T) {
	t.Parallel()
	a := startAPI(t)
	b := startAPIOn(t, a.st, a.redis)
	_, tok := a.account("business")
	n, _, elapsed := spendTimed(t, tok, 1400, a, b)
	within(t, "a business key", n, 600, time.Minute, elapsed)
}

// TestRateLimiterFailsClosed: with Redis gone every authenticated call is a
// prompt 503 with Retry-After; with Redis back calls pass again, without a
// restart of the api.
func TestRateLimiterFailsClosed(t *testing.T) {
	t.Parallel()
	e := startAPI(t)
	_, tok := e.account("pro")
	if r := e.do("GET", "/api/v1/keys", tok, nil); r.Status != 200 {
		t.Fatal(r.Status)
	}
	e.redis.Stop()
	for i := 0; i < 3; i++ {
		r := e.do("POST", "/api/v1/keys", tok, map[string]any{"name": "during outage", "scopes": []string{"full"}})
		if r.Status != 503 || r.Code(t) != "rate_limiter_unavailable" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("Redis down: %d %s", r.Status, r.Body)
		}
	}
	e.redis.Start()
	testenv.Eventually(t, "calls to pass again", func() bool {
		return e.do("GET", "/api/v1/keys", tok, nil).Status == 200
	})
	// Nothing was half-done: the refused creates created no key.
	var keys []struct{ Name string }
	e.do("GET", "/api/v1/keys", tok, nil).JSON(t, &keys)
	for _, k := range keys {
		if k.Name == "during outage" {
			t.Error("a refused request created a key")
		}
	}
}
