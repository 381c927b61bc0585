package ratelimit_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/testenv"
)

type bundle struct {
	redis *testenv.Redis
	rdb   *redis.Client
	lim   *ratelimit.Limiter
}

// loadedTimeout is the Redis timeout of the tests that are not about the
// timeout: generous, so a machine loaded by parallel test binaries makes no
// call fail closed.
const loadedTimeout = 10 * time.Second

func setup(t testing.TB) bundle {
	t.Helper()
	r := testenv.StartRedis(t)
	rdb := r.Client()
	return bundle{redis: r, rdb: rdb, lim: ratelimit.New(rdb, ratelimit.Options{Timeout: loadedTimeout})}
}

func allow(t *testing.T, l *ratelimit.Limiter, limits []ratelimit.Limit) ratelimit.Result {
	t.Helper()
	res, err := l.Allow(context.Background(), limits)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return res
}

// perHour limits refill so slowly (one request every several minutes) that
// a test's own duration cannot change the counts it asserts.
func perHour(key, name string, rate int) ratelimit.Limit {
	return ratelimit.Limit{Key: key, Name: name, Rate: rate, Period: time.Hour}
}

// proSlowed is the pro plan's three limits (120/min, 2000/h per key,
// 300/min per account; TestForPlan checks ForPlan gives those) with every
// period stretched sixty-fold: the same counts, but refills too slow for a
// loaded machine's test duration to change what the test asserts.
func proSlowed(key, acct string) []ratelimit.Limit {
	return []ratelimit.Limit{
		perHour(acct+":"+key+":m", ratelimit.KeyMinute, 120),
		{Key: acct + ":" + key + ":h", Name: ratelimit.KeyHour, Rate: 2000, Period: 60 * time.Hour},
		perHour(acct+":m", ratelimit.AccountMinute, 300),
	}
}

func TestProKeyBurstThenRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	limits := proSlowed("key1", "acct1")

	for i := range 120 {
		res := allow(t, b.lim, limits)
		if !res.Allowed {
			t.Fatalf("request %d refused: %+v", i+1, res)
		}
		if res.Binding.Name != ratelimit.KeyMinute || res.Binding.Remaining != 119-i {
			t.Fatalf("request %d: binding %s remaining %d, want key-minute %d", i+1, res.Binding.Name, res.Binding.Remaining, 119-i)
		}
	}
	res := allow(t, b.lim, limits)
	if res.Allowed {
		t.Fatalf("request 121 allowed: %+v", res)
	}
	if res.Binding.Name != ratelimit.KeyMinute || res.Binding.Remaining != 0 {
		t.Errorf("binding = %s remaining %d, want key-minute 0", res.Binding.Name, res.Binding.Remaining)
	}
	// One request every 30 s (500 ms unstretched) once the burst is spent.
	if res.RetryAfter <= 0 || res.RetryAfter > 30*time.Second {
		t.Errorf("RetryAfter = %v, want in (0, 30s]", res.RetryAfter)
	}
	if got := res.Limits[1]; got.Name != ratelimit.KeyHour || got.Remaining != 1880 || got.RetryAfter != 0 {
		t.Errorf("key-hour = %+v, want 1880 remaining and no retry", got)
	}
}

func TestReplicasShareTheLimitExactly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Two Limiters with their own connections: two API replicas.
	replicas := []*ratelimit.Limiter{b.lim, ratelimit.New(b.redis.Client(), ratelimit.Options{Timeout: loadedTimeout})}
	limits := []ratelimit.Limit{perHour("k", ratelimit.KeyHour, 10)}

	allowed := 0
	for i := range 30 {
		if allow(t, replicas[i%2], limits).Allowed {
			allowed++
		}
	}
	if allowed != 10 {
		t.Errorf("allowed %d across two replicas, want 10", allowed)
	}
}

func TestAccountCeilingStopsSecondKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	limitsOf := func(key string) []ratelimit.Limit {
		return []ratelimit.Limit{
			perHour("key:"+key, ratelimit.KeyHour, 5),
			perHour("acct", ratelimit.AccountMinute, 8),
		}
	}

	for i := range 5 {
		if !allow(t, b.lim, limitsOf("a")).Allowed {
			t.Fatalf("key a request %d refused", i+1)
		}
	}
	if res := allow(t, b.lim, limitsOf("a")); res.Allowed || res.Binding.Name != ratelimit.KeyHour {
		t.Fatalf("key a request 6: allowed=%v binding %s, want refused by key-hour", res.Allowed, res.Binding.Name)
	}
	for i := range 3 {
		if !allow(t, b.lim, limitsOf("b")).Allowed {
			t.Fatalf("key b request %d refused", i+1)
		}
	}
	for range 10 {
		res := allow(t, b.lim, limitsOf("b"))
		if res.Allowed || res.Binding.Name != ratelimit.AccountMinute {
			t.Fatalf("key b request 4: allowed=%v binding %s, want refused by account-minute", res.Allowed, res.Binding.Name)
		}
	}
	// The ten refusals cost key b nothing (an eleventh, refused too,
	// reports what is left).
	if got := allow(t, b.lim, limitsOf("b")).Limits[0].Remaining; got != 2 {
		t.Errorf("key b remaining %d after refusals, want 2", got)
	}
}

func TestAccountCeilingOfProPlan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 300/min for the account, 120/min per key: the third key hits the
	// ceiling after 60.
	for _, n := range []struct {
		key  string
		uses int
	}{{"k1", 120}, {"k2", 120}, {"k3", 60}} {
		limits := proSlowed(n.key, "acct1")
		for i := range n.uses {
			if !allow(t, b.lim, limits).Allowed {
				t.Fatalf("%s request %d refused", n.key, i+1)
			}
		}
	}
	res := allow(t, b.lim, proSlowed("k3", "acct1"))
	if res.Allowed || res.Binding.Name != ratelimit.AccountMinute {
		t.Fatalf("k3 request 61: allowed=%v binding %s, want refused by account-minute", res.Allowed, res.Binding.Name)
	}
	if got := res.Limits[0]; got.Remaining != 60 || got.RetryAfter != 0 {
		t.Errorf("k3 key-minute = remaining %d retry %v, want 60 and 0", got.Remaining, got.RetryAfter)
	}
	// Another account is not affected.
	if !allow(t, b.lim, proSlowed("k9", "acct2")).Allowed {
		t.Error("another account's key refused")
	}
}

func TestRefusalConsumesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	small := perHour("small", "small", 3)
	large := perHour("large", "large", 10)

	// The refusing limit comes first, then last: neither order spends the
	// other limit.
	for _, limits := range [][]ratelimit.Limit{{small, large}, {large, small}} {
		for range 8 {
			allow(t, b.lim, limits)
		}
	}
	res := allow(t, b.lim, []ratelimit.Limit{small, large})
	if res.Allowed || res.Limits[0].Remaining != 0 || res.Limits[1].Remaining != 7 {
		t.Errorf("remaining small %d large %d, want 0 and 7", res.Limits[0].Remaining, res.Limits[1].Remaining)
	}
}

func TestConcurrentRequestsGetExactlyTheLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	replicas := []*ratelimit.Limiter{b.lim, ratelimit.New(b.redis.Client(), ratelimit.Options{Timeout: loadedTimeout})}
	limits := []ratelimit.Limit{perHour("race", ratelimit.KeyHour, 30), perHour("race-acct", ratelimit.AccountMinute, 1000)}

	var allowed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Go(func() {
			<-start
			res, err := replicas[i%2].Allow(context.Background(), limits)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := allowed.Load(); got != 30 {
		t.Errorf("allowed %d of 50, want 30", got)
	}
	// The account limit was spent exactly as often (the key's limit
	// refuses this last call, which spends nothing).
	if got := allow(t, b.lim, limits).Limits[1].Remaining; got != 970 {
		t.Errorf("account remaining %d, want 970", got)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Two per two seconds: one more every second once the burst is spent,
	// slow enough that three calls land inside one emission interval even
	// on a loaded machine.
	limits := []ratelimit.Limit{{Key: "fast", Name: "fast", Rate: 2, Period: 2 * time.Second}}

	allow(t, b.lim, limits)
	allow(t, b.lim, limits)
	res := allow(t, b.lim, limits)
	if res.Allowed {
		t.Fatal("third request within a second allowed")
	}
	if res.RetryAfter <= 0 || res.RetryAfter > time.Second {
		t.Fatalf("RetryAfter = %v, want in (0, 1s]", res.RetryAfter)
	}
	if got := res.RetryAfterSeconds(); got != 1 {
		t.Errorf("RetryAfterSeconds = %d, want 1 (rounded up)", got)
	}
	time.Sleep(res.RetryAfter)
	if res := allow(t, b.lim, limits); !res.Allowed {
		t.Errorf("refused after waiting RetryAfter: %+v", res)
	}
}

func TestKeysUsePrefixAndExpire(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	lim := ratelimit.New(b.rdb, ratelimit.Options{Prefix: "test:", Timeout: loadedTimeout})
	allow(t, lim, []ratelimit.Limit{{Key: "fast", Name: "fast", Rate: 2, Period: time.Second}})
	allow(t, lim, ratelimit.ForPlan("business", "k", "a"))

	keys, err := b.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("keys = %v, want 4", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "test:") {
			t.Errorf("key %q lacks the prefix", k)
		}
	}
	// A key lives as long as its TAT is ahead: one emission interval here.
	for key, maxTTL := range map[string]time.Duration{
		"test:fast":        500 * time.Millisecond,
		"test:{a}:key:k:h": 360 * time.Millisecond, // 10000/hour
		"test:{a}:key:k:m": 100 * time.Millisecond, // 600/min
		"test:{a}:acct:m":  40 * time.Millisecond,  // 1500/min
	} {
		ttl, err := b.rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		// -2: the key existed (listed above) and has expired already, which
		// a loaded machine may take long enough for; -1 would be no expiry.
		if ttl == -2 {
			continue
		}
		if ttl <= 0 || ttl > maxTTL {
			t.Errorf("PTTL %s = %v, want in (0, %v]", key, ttl, maxTTL)
		}
	}
}

func TestUnavailableFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Generous for a loaded machine (the first Allow, with Redis up, must
	// fit in it too), and still far below go-redis's 3 s read timeout.
	const timeout = time.Second
	lim := ratelimit.New(b.rdb, ratelimit.Options{Timeout: timeout})
	limits := ratelimit.ForPlan("pro", "k", "a")
	allow(t, lim, limits)

	b.redis.Stop()
	start := time.Now()
	_, err := lim.Allow(context.Background(), limits)
	if !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("Allow with Redis stopped: err = %v, want ErrUnavailable", err)
	}
	// Far below go-redis's own 3 s read timeout, with room for a loaded machine.
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("Allow took %v with Redis stopped, want at most about %v", d, timeout)
	}

	// It recovers by itself: no restart, no new Limiter. The first calls may
	// still miss the short timeout while a loaded machine reconnects.
	b.redis.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := lim.Allow(context.Background(), limits)
		if err == nil {
			if !res.Allowed {
				t.Errorf("first answer after Redis came back refused: %+v", res)
			}
			break
		}
		if !errors.Is(err, ratelimit.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Allow after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHungRedisFailsWithinTimeout(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers, as a wedged Redis
	// or a black-holed network does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()

	for _, tc := range []struct {
		name string
		opts redis.Options
	}{
		// go-redis's own read timeout is 3s and ignores the context.
		{name: "default client", opts: redis.Options{}},
		{name: "context timeouts", opts: redis.Options{ContextTimeoutEnabled: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.Addr = ln.Addr().String()
			rdb := redis.NewClient(&tc.opts)
			t.Cleanup(func() { rdb.Close() })
			const timeout = 100 * time.Millisecond
			lim := ratelimit.New(rdb, ratelimit.Options{Timeout: timeout})

			// Several at once: some wait in the pipelines, the rest queue
			// behind them; every one fails in time.
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					start := time.Now()
					_, err := lim.Allow(context.Background(), ratelimit.ForAddress("192.0.2.1"))
					if !errors.Is(err, ratelimit.ErrUnavailable) {
						t.Errorf("err = %v, want ErrUnavailable", err)
					}
					if d := time.Since(start); d > timeout+time.Second {
						t.Errorf("Allow took %v against a hung Redis, want at most about %v", d, timeout)
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestInvalidLimitsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, limits := range map[string][]ratelimit.Limit{
		"none":        nil,
		"free plan":   ratelimit.ForPlan("free", "k", "a"),
		"zero rate":   {{Key: "k", Name: "n", Rate: 0, Period: time.Minute}},
		"zero period": {{Key: "k", Name: "n", Rate: 1}},
		"no key":      {{Name: "n", Rate: 1, Period: time.Minute}},
	} {
		res, err := b.lim.Allow(context.Background(), limits)
		if err == nil || res.Allowed {
			t.Errorf("%s: allowed=%v err=%v, want an error", name, res.Allowed, err)
		}
		if errors.Is(err, ratelimit.ErrUnavailable) {
			t.Errorf("%s: a caller's mistake reported as ErrUnavailable: %v", name, err)
		}
	}
}

func TestSetHeadersFromRedis(t *testing.T) {
	t.Parallel()
	b := setup(t)
	limits := ratelimit.ForPlan("pro", "k", "a")

	res := allow(t, b.lim, limits)
	h := http.Header{}
	res.SetHeaders(h)
	want := map[string]string{
		"RateLimit-Policy":      `"key-minute";q=120;w=60, "key-hour";q=2000;w=3600, "account-minute";q=300;w=60`,
		"RateLimit":             `"key-minute";r=119;t=1`,
		"X-RateLimit-Limit":     "120",
		"X-RateLimit-Remaining": "119",
		"Retry-After":           "",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// Full again 500ms after Redis's clock, rounded up to the next second.
	reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if full := res.Now.Add(500 * time.Millisecond); reset < full.Unix() || reset > full.Unix()+1 || time.Unix(reset, 0).Before(full) {
		t.Errorf("X-RateLimit-Reset = %d, want the second at or after %v", reset, full)
	}

	for range 119 {
		allow(t, b.lim, limits)
	}
	// A loaded machine may be slow enough for the bucket to refill a little
	// (one request every 500 ms): spend until the first refusal.
	for range 50 {
		if res = allow(t, b.lim, limits); !res.Allowed {
			break
		}
	}
	h = http.Header{}
	res.SetHeaders(h)
	policy, params := parseItem(t, h.Get("RateLimit"))
	if policy != ratelimit.KeyMinute || params["r"] != 0 || params["t"] != 60 {
		t.Errorf("RateLimit = %q, want key-minute r=0 t=60", h.Get("RateLimit"))
	}
	if got := h.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	if got := h.Get("X-RateLimit-Remaining"); got != "0" {
		t.Errorf("X-RateLimit-Remaining = %q, want 0", got)
	}
}

// parseItem parses one structured-field item `"name";k=int;...`.
func parseItem(t *testing.T, s string) (string, map[string]int64) {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(s), ";")
	name, err := strconv.Unquote(parts[0])
	if err != nil {
		t.Fatalf("item %q: name: %v", s, err)
	}
	params := map[string]int64{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("item %q: parameter %q", s, p)
		}
		params[k] = n
	}
	return name, params
}

func TestSetHeadersRounding(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	lim := ratelimit.Limit{Key: "k", Name: `odd "name"`, Rate: 2, Period: 1500 * time.Millisecond}
	for _, tc := range []struct {
		name       string
		res        ratelimit.Result
		rateLimit  string
		reset      string
		retryAfter string
	}{
		{
			name:      "allowed, reset rounds up",
			res:       ratelimit.Result{Allowed: true, Now: now, Binding: ratelimit.LimitResult{Limit: lim, Remaining: 1, ResetAfter: time.Nanosecond}},
			rateLimit: `"odd \"name\"";r=1;t=1`,
			reset:     "1700000001",
		},
		{
			name:      "allowed, full",
			res:       ratelimit.Result{Allowed: true, Now: now, Binding: ratelimit.LimitResult{Limit: lim, Remaining: 2}},
			rateLimit: `"odd \"name\"";r=2;t=0`,
			reset:     "1700000000",
		},
		{
			name:       "refused, retry rounds up",
			res:        ratelimit.Result{Now: now.Add(time.Millisecond), RetryAfter: 1200 * time.Millisecond, Binding: ratelimit.LimitResult{Limit: lim, ResetAfter: 2 * time.Second, RetryAfter: 1200 * time.Millisecond}},
			rateLimit:  `"odd \"name\"";r=0;t=2`,
			reset:      "1700000003",
			retryAfter: "2",
		},
		{
			name:       "refused, retry never 0",
			res:        ratelimit.Result{Now: now, RetryAfter: time.Microsecond, Binding: ratelimit.LimitResult{Limit: lim, ResetAfter: time.Second}},
			rateLimit:  `"odd \"name\"";r=0;t=1`,
			reset:      "1700000001",
			retryAfter: "1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.res.Limits = []ratelimit.LimitResult{tc.res.Binding}
			h := http.Header{}
			tc.res.SetHeaders(h)
			for k, want := range map[string]string{
				"RateLimit-Policy":  `"odd \"name\"";q=2;w=2`,
				"RateLimit":         tc.rateLimit,
				"X-RateLimit-Limit": "2",
				"X-RateLimit-Reset": tc.reset,
				"Retry-After":       tc.retryAfter,
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	h := http.Header{}
	ratelimit.Result{}.SetHeaders(h)
	if len(h) != 0 {
		t.Errorf("empty result wrote headers %v", h)
	}
}

func TestForPlan(t *testing.T) {
	t.Parallel()
	if got := ratelimit.ForPlan("free", "k", "a"); got != nil {
		t.Errorf("free plan limits = %v, want none", got)
	}
	if got := ratelimit.ForPlan("nope", "k", "a"); got != nil {
		t.Errorf("unknown plan limits = %v, want none", got)
	}
	got := ratelimit.ForPlan("business", "key_1", "acct_1")
	want := []ratelimit.Limit{
		{Key: "{acct_1}:key:key_1:m", Name: "key-minute", Rate: 600, Period: time.Minute},
		{Key: "{acct_1}:key:key_1:h", Name: "key-hour", Rate: 10000, Period: time.Hour},
		{Key: "{acct_1}:acct:m", Name: "account-minute", Rate: 1500, Period: time.Minute},
	}
	if len(got) != len(want) {
		t.Fatalf("business limits = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("limit %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestForAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip, key string
	}{
		{ip: "203.0.113.7", key: "addr:203.0.113.7:m"},
		{ip: "::ffff:203.0.113.7", key: "addr:203.0.113.7:m"},
		{ip: "2001:db8:1:2::1", key: "addr:2001:db8:1:2::/64:m"},
		{ip: "2001:db8:1:2:ffff::9", key: "addr:2001:db8:1:2::/64:m"},
		{ip: "fe80::1%eth0", key: "addr:fe80::/64:m"},
		{ip: "not-an-ip", key: "addr:not-an-ip:m"},
	} {
		got := ratelimit.ForAddress(tc.ip)
		if len(got) != 1 || got[0].Key != tc.key || got[0].Rate != ratelimit.FailedAuthsPerMinute || got[0].Period != time.Minute {
			t.Errorf("ForAddress(%q) = %+v, want key %q", tc.ip, got, tc.key)
		}
	}
}
