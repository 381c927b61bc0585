package flysim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/flysim"
)

// createCalmApp creates an app past chaos (an injected fault, here a
// delay, takes precedence over chaos) and waits until it has propagated.
func createCalmApp(t *testing.T, b *bundle, name string) {
	t.Helper()
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps", DelayMS: 1, Count: -1})
	defer b.sim.ClearFaults()
	b.createApp(name)
	for b.call("GET", "/v1/apps/"+name, nil).code != http.StatusOK {
		time.Sleep(time.Millisecond)
	}
}

// chaosOutcome sends one request with a fresh connection and answers what
// the client saw: a status code, or "error" when no answer came.
func chaosOutcome(t *testing.T, b *bundle, method, path string, body any) string {
	t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(method, b.url+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer test")
	req.Close = true // one connection per call, so a cut one spoils no other
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "error"
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	return strconv.Itoa(resp.StatusCode)
}

func TestChaosIsDeterministic(t *testing.T) {
	t.Parallel()
	run := func(seed uint64) []string {
		b := setupWith(t, flysim.Options{Chaos: 0.5, Seed: seed, ChaosSlow: 5 * time.Millisecond})
		createCalmApp(t, b, "app-1")
		var out []string
		for range 40 {
			out = append(out, chaosOutcome(t, b, "GET", "/v1/apps/app-1/machines", nil))
		}
		return out
	}
	a, again, other := run(7), run(7), run(8)
	if fmt.Sprint(a) != fmt.Sprint(again) {
		t.Errorf("seed 7 gave\n%v\nthen\n%v", a, again)
	}
	if fmt.Sprint(a) == fmt.Sprint(other) {
		t.Errorf("seeds 7 and 8 gave the same faults: %v", a)
	}
}

func TestChaosFaults(t *testing.T) {
	t.Parallel()
	b := setupWith(t, flysim.Options{Chaos: 0.6, Seed: 42, ChaosSlow: 5 * time.Millisecond})
	createCalmApp(t, b, "app-1")
	before := b.sim.ChaosStats()
	seen := map[string]int{}
	const calls = 200
	for i := range calls {
		seen[chaosOutcome(t, b, "POST", "/v1/apps/app-1/machines", map[string]any{
			"name": fmt.Sprintf("m-%d", i), "config": map[string]any{"image": "x"},
		})]++
	}
	stats := b.sim.ChaosStats()
	for _, kind := range []string{flysim.ChaosUnavailable, flysim.ChaosBadGateway, flysim.ChaosBadGatewayAf,
		flysim.ChaosResetBefore, flysim.ChaosResetAfter, flysim.ChaosTimeout, flysim.ChaosRateLimited, flysim.ChaosSlow} {
		if stats[kind] == 0 {
			t.Errorf("no %s fault in %d calls: %v", kind, calls, stats)
		}
	}
	diff := func(k string) int { return stats[k] - before[k] }
	// Every call is a success, a 5xx or 429 Fly-style answer, or no answer.
	if got := seen["200"] + seen["502"] + seen["503"] + seen["429"] + seen["error"]; got != calls {
		t.Errorf("outcomes %v", seen)
	}
	if seen["503"] != diff(flysim.ChaosUnavailable) || seen["429"] != diff(flysim.ChaosRateLimited) ||
		seen["502"] != diff(flysim.ChaosBadGateway)+diff(flysim.ChaosBadGatewayAf) ||
		seen["error"] != diff(flysim.ChaosResetBefore)+diff(flysim.ChaosResetAfter)+diff(flysim.ChaosTimeout) {
		t.Errorf("outcomes %v do not match faults %v", seen, stats)
	}
	// The "after" faults applied the change: their machines exist.
	made := len(b.sim.Machines()[0].Machines)
	if want := seen["200"] + diff(flysim.ChaosBadGatewayAf) + diff(flysim.ChaosResetAfter) + diff(flysim.ChaosTimeout); made != want {
		t.Errorf("%d machines, want %d (outcomes %v, faults %v)", made, want, seen, stats)
	}

	var overHTTP map[string]int
	b.want(b.call("GET", "/_flysim/chaos", nil, "Authorization", ""), http.StatusOK).decode(t, &overHTTP)
	if overHTTP[flysim.ChaosSlow] < stats[flysim.ChaosSlow] {
		t.Errorf("GET /_flysim/chaos = %v", overHTTP)
	}
}

func TestChaosSlowPropagation(t *testing.T) {
	t.Parallel()
	// With every call chosen, every app takes longer to propagate, even
	// with wait=true; only its cookie sees it meanwhile.
	b := setupWith(t, flysim.Options{Chaos: 1, Seed: 3, ChaosSlow: time.Hour})
	b.sim.InjectFault(flysim.Fault{Path: "/v1/apps", DelayMS: 1, Count: -1}) // an injected fault takes precedence over chaos
	b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "late-app", "org_slug": "personal"}), http.StatusCreated)
	a := b.call("GET", "/v1/apps/late-app", nil)
	if a.code != http.StatusNotFound && a.code != http.StatusUnauthorized {
		t.Errorf("GET a late app: %d %s", a.code, a.body)
	}
	if b.sim.ChaosStats()[flysim.ChaosPropagation] != 1 {
		t.Errorf("stats %v", b.sim.ChaosStats())
	}
}
