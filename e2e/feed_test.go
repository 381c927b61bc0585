package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// TestCustomerMetricsFeed: GET /api/v1/metrics parses with Prometheus's
// text parser, shows the account's instances (status, up, hours, last
// operation) and headroom, and nothing of another account's.
func TestCustomerMetricsFeed(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	_, otherToken := sys.NewAccount(t, "pro")

	ok := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "feed-ok", "fly_region": "lhr"})
	sys.WaitOperation(t, token, ok.ID)
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps/{app}/machines", Status: http.StatusUnprocessableEntity})
	bad := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "feed-bad"})
	if d := sys.WaitOperation(t, token, bad.ID); d.Status != "failed" {
		t.Fatalf("create on a 422: %+v", d)
	}
	theirs := accept(t, sys, http.MethodPost, "/api/v1/instances", otherToken, map[string]string{"subdomain": "feed-theirs"})
	sys.WaitOperation(t, otherToken, theirs.ID)

	r := sys.Do(t, http.MethodGet, "/api/v1/metrics", token, nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") || r.Header.Get("X-RateLimit-Remaining") == "" {
		t.Fatalf("GET /api/v1/metrics: %d %v\n%s", r.Status, r.Header, r.Body)
	}
	m := ParseMetrics(t, r.Body)
	okLabels := []string{"subdomain", "feed-ok", "region", "lhr", "instance_id", ok.InstanceID}
	checks := []struct {
		what   string
		got    float64
		want   float64
		labels []string
	}{
		{"moc_instance_up", m.Value("moc_instance_up", okLabels...), 1, nil},
		{"moc_instance_status running", m.Value("moc_instance_status", append(okLabels, "status", "running")...), 1, nil},
		{"moc_instance_status (all of one instance)", m.Value("moc_instance_status", okLabels...), 1, nil},
		{"moc_instance_up of the failed one", m.Value("moc_instance_up", "subdomain", "feed-bad"), 0, nil},
		{"moc_instance_status failed", m.Value("moc_instance_status", "subdomain", "feed-bad", "status", "failed"), 1, nil},
		{"last operation success", m.Value("moc_instance_last_operation_success", append(okLabels, "type", "instance.create", "status", "succeeded")...), 1, nil},
		{"last operation failed", m.Value("moc_instance_last_operation_success", "subdomain", "feed-bad", "type", "instance.create", "status", "failed"), 0, nil},
		{"moc_account_instances", m.Value("moc_account_instances"), 2, nil},
		{"moc_account_instance_limit", m.Value("moc_account_instance_limit"), 6, nil},
		{"key-minute limit", m.Value("moc_account_ratelimit_limit", "policy", "key-minute"), 120, nil},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := len(m["moc_instance_last_operation_success"].GetMetric()); n != 2 {
		t.Errorf("%d last-operation series, want one per instance", n)
	}
	if h := m.Value("moc_instance_running_hours_month", okLabels...); h <= 0 || h > 1 {
		t.Errorf("running hours of an instance up for seconds = %v", h)
	}
	if d := m.Value("moc_instance_last_operation_duration_seconds", okLabels...); d <= 0 {
		t.Errorf("last operation duration = %v", d)
	}
	if rem := m.Value("moc_account_ratelimit_remaining", "policy", "key-minute"); rem <= 0 || rem >= 120 {
		t.Errorf("key-minute remaining = %v: the scrape must count against the limit", rem)
	}
	for _, sub := range m.Labels("moc_instance_status", "subdomain") {
		if sub == "feed-theirs" {
			t.Errorf("another account's instance in the feed:\n%s", r.Body)
		}
	}
	if got := sys.Do(t, http.MethodGet, "/api/v1/metrics", otherToken, nil); !strings.Contains(string(got.Body), `subdomain="feed-theirs"`) || strings.Contains(string(got.Body), "feed-ok") {
		t.Errorf("the other account's feed:\n%s", got.Body)
	}
	noScope := sys.NewKey(t, mustAccount(t, sys, token), apikey.OperationsRead)
	if r := sys.Do(t, http.MethodGet, "/api/v1/metrics", noScope, nil); r.Status != http.StatusForbidden || r.Code(t) != "insufficient_scope" {
		t.Errorf("without instance:read: %d %s", r.Status, r.Body)
	}
}

// mustAccount answers the account of a token.
func mustAccount(t *testing.T, sys *System, token string) string {
	t.Helper()
	var a struct {
		ID string `json:"id"`
	}
	sys.Do(t, http.MethodGet, "/api/v1/account", token, nil).JSON(t, &a)
	return a.ID
}

// TestCustomerMetricsFeedIsOneStatement counts, on the wire to Postgres,
// what one scrape of the feed costs: authentication's statement plus ONE,
// however many instances the account holds.
func TestCustomerMetricsFeedIsOneStatement(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	acct, token := sys.NewAccount(t, "business")
	for _, sub := range []string{"count-1", "count-2", "count-3"} {
		op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": sub})
		sys.WaitOperation(t, token, op.ID)
	}
	noScope := sys.NewKey(t, acct, apikey.OperationsRead)

	pg := testenv.CountPostgres(t, sys.DatabaseURL)
	st, err := store.Open(context.Background(), pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rc := sys.Redis.Client()
	counted := api.New(api.Options{
		Store: st, Redis: rc, Pepper: Pepper, AllowPlainHTTP: true,
		Limiter: ratelimit.New(rc, ratelimit.Options{Prefix: "e2e:rl:", Timeout: 5 * time.Second}),
	})
	hs := httptest.NewServer(counted.Handler())
	t.Cleanup(hs.Close)
	cost := func(tok string, want int) int64 {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/v1/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		s0, _ := pg.Counts()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET /api/v1/metrics: %d, want %d", resp.StatusCode, want)
		}
		s1, _ := pg.Counts()
		return s1 - s0
	}
	// Opens the pool's connection, and both keys' rows are kept after.
	cost(token, http.StatusOK)
	cost(noScope, http.StatusForbidden)
	auth := cost(noScope, http.StatusForbidden)
	feed := cost(token, http.StatusOK)
	t.Logf("statements: authentication alone %d, a scrape of 3 instances %d", auth, feed)
	if feed-auth != 1 {
		t.Errorf("the feed costs %d statements beyond authentication, want 1", feed-auth)
	}
}
