package flysim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/flysim"
)

func TestUpdateMachine(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-u")
	m := b.createMachine("app-u", map[string]any{"region": "iad", "config": map[string]any{
		"image": "registry.fly.io/openclaw:1.0", "env": map[string]string{"A": "1"},
	}})
	base := "/v1/apps/app-u/machines/" + m.ID

	t.Run("replaces the config and restarts the machine", func(t *testing.T) {
		b := b.with(t)
		var got flysim.Machine
		b.want(b.call("POST", base, map[string]any{"config": map[string]any{
			"image": "registry.fly.io/openclaw:2.0", "env": map[string]string{"B": "2"},
		}}), http.StatusOK).decode(t, &got)
		if got.Config.Image != "registry.fly.io/openclaw:2.0" || got.ImageRef.Tag != "2.0" {
			t.Fatalf("image after update: %q (%+v)", got.Config.Image, got.ImageRef)
		}
		if got.Config.Env["A"] != "" || got.Config.Env["B"] != "2" {
			t.Errorf("env %v: an update replaces the whole config", got.Config.Env)
		}
		if got.Version == m.Version || got.InstanceID == m.InstanceID {
			t.Errorf("version %s / instance_id %s unchanged by an update", got.Version, got.InstanceID)
		}
		if got.State != flysim.StateStarted {
			t.Errorf("state %s after update, want started", got.State)
		}
		var saw []string
		for _, ev := range got.Events {
			saw = append(saw, ev.Status)
		}
		if !strings.Contains(strings.Join(saw, ","), "started,starting,updating") {
			t.Errorf("events %v lack updating → starting → started", saw)
		}
	})

	t.Run("skip_launch leaves it stopped", func(t *testing.T) {
		b := b.with(t)
		var got flysim.Machine
		b.want(b.call("POST", base, map[string]any{"skip_launch": true, "config": map[string]any{"image": "registry.fly.io/openclaw:3.0"}}), http.StatusOK).decode(t, &got)
		if got.State != flysim.StateStopped {
			t.Fatalf("state %s, want stopped", got.State)
		}
		// Without skip_launch an update starts a stopped machine.
		b.want(b.call("POST", base, map[string]any{"config": map[string]any{"image": "registry.fly.io/openclaw:3.0"}}), http.StatusOK).decode(t, &got)
		if got.State != flysim.StateStarted {
			t.Fatalf("state %s, want started", got.State)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		b := b.with(t)
		b.want(b.call("POST", base, map[string]any{"config": map[string]any{"image": ""}}), http.StatusUnprocessableEntity)
		b.want(b.call("POST", base, map[string]any{"config": map[string]any{"image": "x"}, "region": "lhr"}), http.StatusBadRequest)
		b.want(b.call("POST", base, map[string]any{"config": map[string]any{"image": "x",
			"checks": map[string]any{"alive": map[string]any{"type": "grpc", "port": 80}}}}), http.StatusBadRequest)
		b.want(b.call("POST", "/v1/apps/app-u/machines/0000000000000f", map[string]any{"config": map[string]any{"image": "x"}}), http.StatusNotFound)
		b.want(b.call("POST", base, "not json"), http.StatusBadRequest)
	})

	t.Run("honours leases", func(t *testing.T) {
		b := b.with(t)
		var l struct {
			Data struct {
				Nonce string `json:"nonce"`
			} `json:"data"`
		}
		b.want(b.call("POST", base+"/lease?ttl=30", nil), http.StatusOK).decode(t, &l)
		in := map[string]any{"config": map[string]any{"image": "registry.fly.io/openclaw:4.0"}}
		a := b.want(b.call("POST", base, in), http.StatusConflict)
		if msg, _ := a.errBody(t); !strings.Contains(msg, "lease currently held by") {
			t.Errorf("message %q", msg)
		}
		b.want(b.call("POST", base, in, "fly-machine-lease-nonce", "wrong"), http.StatusConflict)
		b.want(b.call("POST", base, in, "fly-machine-lease-nonce", l.Data.Nonce), http.StatusOK)
		b.want(b.call("DELETE", base+"/lease", nil, "fly-machine-lease-nonce", l.Data.Nonce), http.StatusOK)
	})

	t.Run("a destroyed machine is gone", func(t *testing.T) {
		b := b.with(t)
		m := b.createMachine("app-u", nil)
		b.want(b.call("DELETE", "/v1/apps/app-u/machines/"+m.ID+"?force=true", nil), http.StatusOK)
		b.want(b.call("POST", "/v1/apps/app-u/machines/"+m.ID, map[string]any{"config": map[string]any{"image": "x"}}), http.StatusNotFound)
	})
}

func TestUpdateWithDelayPassesThroughUpdating(t *testing.T) {
	t.Parallel()
	// Long enough that the second update surely lands while the first is
	// still updating, even on a loaded machine.
	b := setup(t, 400*time.Millisecond)
	b.createApp("app-d")
	m := b.createMachine("app-d", nil)
	b.want(b.wait("app-d", m.ID, "state=started&timeout=5"), http.StatusOK)
	var got flysim.Machine
	b.want(b.call("POST", "/v1/apps/app-d/machines/"+m.ID, map[string]any{"config": map[string]any{"image": "registry.fly.io/openclaw:9"}}), http.StatusOK).decode(t, &got)
	if got.State != flysim.StateUpdating {
		t.Fatalf("state %s right after the update, want updating", got.State)
	}
	// A machine being updated is busy: another update is refused.
	b.want(b.call("POST", "/v1/apps/app-d/machines/"+m.ID, map[string]any{"config": map[string]any{"image": "registry.fly.io/openclaw:10"}}), http.StatusPreconditionFailed)
	b.want(b.wait("app-d", m.ID, "state=started&timeout=5"), http.StatusOK)
	if got := b.machine("app-d", m.ID); got.Config.Image != "registry.fly.io/openclaw:9" {
		t.Fatalf("image %s", got.Config.Image)
	}
}

func TestHealthChecks(t *testing.T) {
	t.Parallel()
	const good, bad = "registry.fly.io/openclaw:good", "registry.fly.io/openclaw:bad"
	checks := map[string]any{"gateway": map[string]any{"type": "http", "port": 18789, "path": "/healthz", "interval": "15s", "grace_period": "10s"}}

	t.Run("passing once started, critical for an unhealthy image", func(t *testing.T) {
		b := setup(t, 0)
		b.createApp("app-h")
		m := b.createMachine("app-h", map[string]any{"config": map[string]any{"image": good, "checks": checks}})
		if len(m.Checks) != 1 || m.Checks[0].Name != "gateway" || m.Checks[0].Status != flysim.CheckPassing {
			t.Fatalf("checks %+v", m.Checks)
		}
		b.sim.SetImageHealth(bad, false)
		var got flysim.Machine
		b.want(b.call("POST", "/v1/apps/app-h/machines/"+m.ID, map[string]any{"config": map[string]any{"image": bad, "checks": checks}}), http.StatusOK).decode(t, &got)
		if got.State != flysim.StateStarted || got.Checks[0].Status != flysim.CheckCritical || !strings.Contains(got.Checks[0].Output, "refused") {
			t.Fatalf("unhealthy image: state %s, checks %+v", got.State, got.Checks)
		}
		// Back to the good image: healthy again.
		b.want(b.call("POST", "/v1/apps/app-h/machines/"+m.ID, map[string]any{"config": map[string]any{"image": good, "checks": checks}}), http.StatusOK).decode(t, &got)
		if got.Checks[0].Status != flysim.CheckPassing {
			t.Fatalf("checks %+v", got.Checks)
		}
		// A stopped machine fails its checks.
		b.want(b.call("POST", "/v1/apps/app-h/machines/"+m.ID+"/stop", nil), http.StatusOK)
		if got := b.machine("app-h", m.ID); got.Checks[0].Status != flysim.CheckCritical {
			t.Fatalf("stopped machine checks %+v", got.Checks)
		}
		// A machine without checks reports none.
		if plain := b.createMachine("app-h", nil); len(plain.Checks) != 0 {
			t.Fatalf("checks %+v without config.checks", plain.Checks)
		}
	})

	t.Run("critical until the machine has run for one delay", func(t *testing.T) {
		b := setup(t, 30*time.Millisecond)
		b.createApp("app-h")
		m := b.createMachine("app-h", map[string]any{"config": map[string]any{"image": good, "checks": checks}})
		if m.Checks[0].Status != flysim.CheckCritical {
			t.Fatalf("a machine still starting: checks %+v", m.Checks)
		}
		b.want(b.wait("app-h", m.ID, "state=started&timeout=5"), http.StatusOK)
		deadline := time.Now().Add(5 * time.Second)
		for b.machine("app-h", m.ID).Checks[0].Status != flysim.CheckPassing {
			if time.Now().After(deadline) {
				t.Fatal("checks never passed")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("admin endpoint and option", func(t *testing.T) {
		sim := flysim.New(flysim.Options{UnhealthyImages: []string{bad}})
		defer sim.Close()
		if got := sim.UnhealthyImages(); len(got) != 1 || got[0] != bad {
			t.Fatalf("unhealthy %v", got)
		}
		b := setup(t, 0)
		var out struct {
			Unhealthy []string `json:"unhealthy"`
		}
		b.want(b.call("POST", "/_flysim/images/health", map[string]any{"image": bad, "healthy": false}), http.StatusOK).decode(t, &out)
		if len(out.Unhealthy) != 1 {
			t.Fatalf("unhealthy %v", out.Unhealthy)
		}
		b.want(b.call("POST", "/_flysim/images/health", map[string]any{"image": bad}), http.StatusBadRequest)
		b.want(b.call("POST", "/_flysim/images/health", map[string]any{"image": bad, "healthy": true}), http.StatusOK).decode(t, &out)
		if len(out.Unhealthy) != 0 {
			t.Fatalf("unhealthy %v", out.Unhealthy)
		}
	})

	t.Run("invalid checks are refused at create", func(t *testing.T) {
		b := setup(t, 0)
		b.createApp("app-h")
		for _, c := range []map[string]any{
			{"type": "tcp", "port": 0},
			{"type": "http", "port": 80, "path": "healthz"},
			{"type": "tcp", "port": 80, "interval": "soon"},
			{"type": "tcp", "port": 80, "kind": "liveness"},
		} {
			b.want(b.call("POST", "/v1/apps/app-h/machines", map[string]any{"config": map[string]any{"image": good,
				"checks": map[string]any{"c": c}}}), http.StatusBadRequest)
		}
	})
}
