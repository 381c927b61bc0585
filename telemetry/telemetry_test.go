package telemetry_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/telemetry"
)

// Zero makes every combination of the sets exist at 0, and nothing else;
// registering a family twice on one registry answers the first.
func TestZeroAndRegisterOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := telemetry.NewCounterVec(reg, "test_total", "help", "kind", "reason")
	telemetry.Zero(c.MetricVec, []string{"a", "b"}, []string{"x", "y", "z"})
	again := telemetry.NewCounterVec(reg, "test_total", "help", "kind", "reason")
	again.WithLabelValues("a", "x").Inc()

	fams, err := reg.Gather()
	if err != nil || len(fams) != 1 {
		t.Fatalf("gather: %v %v", fams, err)
	}
	got := map[string]float64{}
	for _, m := range fams[0].GetMetric() {
		l := m.GetLabel()
		got[l[0].GetValue()+","+l[1].GetValue()] = m.GetCounter().GetValue()
	}
	want := map[string]float64{"a,x": 1, "a,y": 0, "a,z": 0, "b,x": 0, "b,y": 0, "b,z": 0}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
