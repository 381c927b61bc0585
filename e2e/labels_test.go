package e2e

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// labelSets are the only values each label of the engine's metrics may
// take ("other" stands for anything else).
var labelSets = map[string][]string{
	"type":       {"instance.create", "instance.start", "instance.stop", "instance.restart", "instance.delete", "instance.upgrade", "instance.configure", "other"},
	"outcome":    {"succeeded", "failed", "delivered", "retry", "exhausted", "gone", "other", "ran", "taken", "left", "dropped"},
	"code":       {"none", "fly_rejected", "fly_unavailable", "machine_gone", "no_machine", "unknown_operation", "upgrade_rolled_back", "cancelled", "other"},
	"result":     {"ok", "transient", "rejected", "error", "replayed", "in_use", "reused"},
	"code_class": {"1xx", "2xx", "3xx", "4xx", "5xx", "network", "other"},
	"policy":     {"key-minute", "key-hour", "account-minute", "address-minute", "other"},
	"kind":       {"operation", "delivery", "app", "machine", "volume"},
	"reason":     {"missing", "archived", "rescue", "endpoint_disabled", "attempts_exhausted"},
	"observed":   {"running", "stopped", "failed", "other"},
	"job":        {"relay", "reconcile", "retention", "other"},
	"attempt":    {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "other"},
	"queue":      {"lifecycle", "webhooks"},
	"state":      {"active", "pending", "scheduled", "retry", "archived", "completed", "aggregating"},
}

// The method label: the api's names any method it knows as sent, the rest
// OTHER; the Fly client's, the methods it may send, the rest "other".
var (
	apiMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER"}
	flyMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "other"}
)

// TestHostileInputKeepsLabelsInTheirSets sends what an attacker or a broken
// client would (odd methods, ids that exist nowhere, junk keys and bodies)
// and checks that no label of the engine's metrics took a value outside its
// fixed set: no id, path or input becomes a series.
func TestHostileInputKeepsLabelsInTheirSets(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	hostile := []struct{ method, path, body string }{
		{http.MethodPost, "/api/v1/instances/inst_<script>alert(1)</script>/start", ""},
		{http.MethodPost, "/api/v1/instances/inst_" + strings.Repeat("A", 300) + "/restart", ""},
		{http.MethodDelete, "/api/v1/instances/inst_%00%ff", ""},
		{http.MethodPost, "/api/v1/instances", `{"subdomain":"x\u0000y","fly_region":"../../etc"}`},
		{http.MethodPost, "/api/v1/instances", `{"subdomain":"hostile-ok","fly_region":"iad"}`},
		{http.MethodGet, "/api/v1/operations/op_" + strings.Repeat("z", 40), ""},
		{http.MethodPatch, "/api/v1/webhooks/wh_nope", `{"enabled":"maybe"}`},
		{http.MethodGet, "/metrics/../api/v1/keys", ""},
		// Methods no route has, or no client should send (issue 12: a
		// raw method as a label grew /metrics without bound).
		{"PROPFIND", "/api/v1/instances", ""},
		{"get", "/api/v1/instances", ""},
		{strings.Repeat("M", 300), "/api/v1/instances", ""},
		{"X-" + strings.Repeat("Z", 40), "/api/v1/instances/inst_nope/start", ""},
	}
	for _, h := range hostile {
		for _, key := range []string{"", "k\u00e9y", strings.Repeat("k", 255)} {
			req, err := http.NewRequest(h.method, sys.URL+h.path, strings.NewReader(h.body))
			if err != nil {
				continue // a path Go refuses to send never reaches the api
			}
			req.Header.Set("Authorization", "Bearer "+token)
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	m := sys.Metrics(t)
	// The odd methods reached the api and were counted, as OTHER.
	if n := m.Value("mocd_http_requests_total", "method", "OTHER"); n < 3 {
		t.Errorf("mocd_http_requests_total{method=OTHER} = %v after the odd methods", n)
	}
	checked := 0
	for name, f := range m {
		if !strings.HasPrefix(name, "mocd_") && !strings.HasPrefix(name, "asynq_") {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				v := l.GetValue()
				switch l.GetName() {
				case "route":
					if strings.HasPrefix(name, "mocd_fly_") && v != "other" && !strings.HasPrefix(v, "/v1/apps") {
						t.Errorf("%s: route %q", name, v)
					}
					if strings.ContainsAny(v, "<>%\x00") || strings.Contains(v, "inst_") || strings.Contains(v, "op_") {
						t.Errorf("%s: route %q carries input", name, v)
					}
				case "method":
					set := apiMethods
					if strings.HasPrefix(name, "mocd_fly_") {
						set = flyMethods
					}
					if !slices.Contains(set, v) {
						t.Errorf("%s: method %q is outside its set", name, v)
					}
				case "status":
					// The status the api answered: a 3-digit code.
					if n, err := strconv.Atoi(v); err != nil || n < 100 || n > 599 || len(v) != 3 {
						t.Errorf("%s: status %q is not an HTTP status", name, v)
					}
				case "le":
					// Histogram buckets.
				default:
					set, ok := labelSets[l.GetName()]
					if !ok {
						t.Errorf("%s: label %s has no fixed set in this test", name, l.GetName())
						continue
					}
					if !slices.Contains(set, v) {
						t.Errorf("%s: %s=%q is outside its set", name, l.GetName(), v)
					}
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no label checked")
	}
}
