package e2e

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// metricName finds the metric names a PromQL expression mentions: every
// dashboard and alert query of deploy/ uses mocd_ or asynq_ series.
var metricName = regexp.MustCompile(`\b(?:mocd|asynq)_[a-z0-9_]+`)

// TestDashboardQueriesNameRealMetrics: after real work, every metric that
// the Grafana dashboard and the alert rules in deploy/ query is on the
// System's /metrics page (a histogram's _bucket, _sum and _count included).
func TestDashboardQueriesNameRealMetrics(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "grafana-check"})
	sys.WaitOperation(t, token, op.ID)
	m := sys.Metrics(t)

	for _, file := range []string{"../deploy/grafana/mocd.json", "../deploy/prometheus/alerts.yml"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		names := metricName.FindAllString(string(b), -1)
		if len(names) == 0 {
			t.Fatalf("%s names no metric", file)
		}
		for _, n := range names {
			base := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if f, ok := m[strings.TrimSuffix(n, suf)]; ok && strings.HasSuffix(n, suf) && f.GetType().String() == "HISTOGRAM" {
					base = strings.TrimSuffix(n, suf)
				}
			}
			if _, ok := m[base]; !ok {
				t.Errorf("%s queries %s, which no process exports", file, n)
			}
		}
	}
}
