package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a /metrics page, parsed by Prometheus's own
// text parser: families by name.
type Metrics map[string]*dto.MetricFamily

// ParseMetrics parses the Prometheus text format, failing the test when
// Prometheus could not.
func ParseMetrics(t testing.TB, body []byte) Metrics {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("e2e: parse metrics: %v\n%s", err, body)
	}
	return fams
}

// Scrape reads url (a /metrics page) with an optional bearer token.
func Scrape(t testing.TB, url, token string) Metrics {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("e2e: scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("e2e: scrape %s: %d %v %s", url, resp.StatusCode, err, body)
	}
	return ParseMetrics(t, body)
}

// Metrics scrapes the System's /metrics: the api's, the worker's and the
// Fly client's series together, as `mocd dev` shows them.
func (s *System) Metrics(t testing.TB) Metrics {
	t.Helper()
	return Scrape(t, s.URL+"/metrics", "")
}

// Value sums the series of family name whose labels include every
// name=value pair given ("type", "instance.create", …): a counter's or
// gauge's value, a histogram's sample count. A family that does not exist
// is 0.
func (m Metrics) Value(name string, labels ...string) float64 {
	f, ok := m[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, s := range f.GetMetric() {
		if !matches(s, labels) {
			continue
		}
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Histogram != nil:
			sum += float64(s.GetHistogram().GetSampleCount())
		case s.Untyped != nil:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum
}

func matches(s *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Labels answers every value label takes in family name.
func (m Metrics) Labels(name, label string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range m[name].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == label && !seen[l.GetValue()] {
				seen[l.GetValue()] = true
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

// String lists the family names, for failure messages.
func (m Metrics) String() string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	return strings.Join(names, " ")
}
