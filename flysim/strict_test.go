package flysim_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/flysim"
)

// setupWith is setup with every Option.
func setupWith(t *testing.T, opts flysim.Options) *bundle {
	t.Helper()
	sim := flysim.New(opts)
	ts := httptest.NewServer(sim)
	t.Cleanup(func() {
		ts.Close()
		sim.Close()
	})
	return &bundle{t: t, sim: sim, url: ts.URL}
}

func TestCreateAppBody(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	// The spec's CreateAppRequest has "name"; the legacy "app_name" is refused.
	a := b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"app_name": "legacy", "org_slug": "personal"}), http.StatusUnprocessableEntity)
	if msg, _ := a.errBody(t); !strings.Contains(msg, `"name"`) {
		t.Errorf("message %q does not point at name", msg)
	}
	b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "no-org"}), http.StatusBadRequest)
	b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "ok-app", "org_slug": "personal"}), http.StatusCreated)
}

func TestAppPropagation(t *testing.T) {
	t.Parallel()
	b := setupWith(t, flysim.Options{Propagation: time.Hour})

	t.Run("a new app is unknown until it propagates", func(t *testing.T) {
		b := b.with(t)
		b.want(b.call("POST", "/v1/apps", map[string]string{"name": "slow-app", "org_slug": "personal"}), http.StatusCreated)
		b.want(b.call("GET", "/v1/apps/slow-app", nil), http.StatusNotFound).errBody(t)
		b.want(b.call("GET", "/v1/apps/slow-app/machines", nil), http.StatusNotFound)
		b.want(b.call("POST", "/v1/apps/slow-app/machines", map[string]any{"config": map[string]any{"image": "x"}}), http.StatusNotFound)
		// Its name is taken all the same: names are global.
		b.want(b.call("POST", "/v1/apps", map[string]string{"name": "slow-app", "org_slug": "personal"}), http.StatusUnprocessableEntity)
		// Lists show only propagated apps.
		var list struct {
			Total int          `json:"total_apps"`
			Apps  []flysim.App `json:"apps"`
		}
		b.want(b.call("GET", "/v1/apps?org_slug=personal", nil), http.StatusOK).decode(t, &list)
		if list.Total != 0 || len(list.Apps) != 0 {
			t.Errorf("list = %+v", list)
		}
	})
	t.Run("wait=true answers once the app is visible", func(t *testing.T) {
		b := b.with(t)
		b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "waited-app", "org_slug": "personal"}), http.StatusCreated)
		b.want(b.call("GET", "/v1/apps/waited-app", nil), http.StatusOK)
		b.createMachine("waited-app", nil)
	})
	t.Run("the affinity cookie reaches the creator's node", func(t *testing.T) {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Jar: jar}
		do := func(method, path string, body any) int {
			t.Helper()
			var raw []byte
			if body != nil {
				raw, _ = json.Marshal(body)
			}
			req, _ := http.NewRequest(method, b.url+path, bytes.NewReader(raw))
			req.Header.Set("Authorization", "FlyV1 fm2_test")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := do("POST", "/v1/apps", map[string]string{"name": "jar-app", "org_slug": "personal"}); code != http.StatusCreated {
			t.Fatalf("create: %d", code)
		}
		if code := do("GET", "/v1/apps/jar-app", nil); code != http.StatusOK {
			t.Errorf("GET with the cookie: %d", code)
		}
		if code := do("POST", "/v1/apps/jar-app/machines", map[string]any{"config": map[string]any{"image": "x"}}); code != http.StatusOK {
			t.Errorf("create machine with the cookie: %d", code)
		}
		// Another client, without the cookie, still sees nothing.
		b.want(b.with(t).call("GET", "/v1/apps/jar-app", nil), http.StatusNotFound)
	})
}

func TestListApps(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	for _, a := range []struct{ name, org string }{{"b-app", "acme"}, {"a-app", "acme"}, {"other", "personal"}} {
		b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": a.name, "org_slug": a.org}), http.StatusCreated)
	}
	b.want(b.call("GET", "/v1/apps", nil), http.StatusBadRequest).errBody(t)
	var list struct {
		Total int          `json:"total_apps"`
		Apps  []flysim.App `json:"apps"`
	}
	b.want(b.call("GET", "/v1/apps?org_slug=acme", nil), http.StatusOK).decode(t, &list)
	if list.Total != 2 || len(list.Apps) != 2 || list.Apps[0].Name != "a-app" || list.Apps[1].Name != "b-app" {
		t.Errorf("acme apps = %+v", list)
	}
}

func TestMachineConfigEchoedWhole(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	var vol struct {
		ID string `json:"id"`
	}
	b.want(b.call("POST", "/v1/apps/app-1/volumes", map[string]any{"name": "data", "region": "iad", "size_gb": 1}), http.StatusOK).decode(t, &vol)
	config := map[string]any{
		"image":    "registry.fly.io/openclaw:1.2",
		"guest":    map[string]any{"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
		"env":      map[string]string{"MODE": "prod"},
		"metadata": map[string]string{"mocd_instance_id": "ins_1"},
		"services": []any{map[string]any{
			"protocol": "tcp", "internal_port": 8080, "autostop": "stop", "autostart": true,
			"ports":       []any{map[string]any{"port": 443, "handlers": []string{"tls", "http"}}},
			"checks":      []any{map[string]any{"type": "http", "path": "/health", "interval": "15s", "timeout": "2s"}},
			"concurrency": map[string]any{"type": "requests", "hard_limit": 25, "soft_limit": 20},
		}},
		"checks":  map[string]any{"alive": map[string]any{"type": "http", "port": 8080, "path": "/healthz", "interval": "10s", "grace_period": "5s"}},
		"restart": map[string]any{"policy": "on-failure", "max_retries": 3},
		"mounts":  []any{map[string]any{"volume": vol.ID, "path": "/data"}},
		"init":    map[string]any{"cmd": []string{"openclaw", "serve"}},
		"files":   []any{map[string]any{"guest_path": "/etc/x", "raw_value": "aGk="}},
	}
	m := b.createMachine("app-1", map[string]any{"name": "whole", "config": config})

	raw := b.want(b.call("GET", "/v1/apps/app-1/machines/"+m.ID, nil), http.StatusOK).body
	var got struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(config)
	var wantMap map[string]any
	_ = json.Unmarshal(want, &wantMap)
	for k, v := range wantMap {
		gv, _ := json.Marshal(got.Config[k])
		wv, _ := json.Marshal(v)
		if !bytes.Equal(gv, wv) {
			t.Errorf("config.%s = %s, want %s", k, gv, wv)
		}
	}
	if m.Config.Restart == nil || m.Config.Restart.Policy != "on-failure" || len(m.Config.Mounts) != 1 || m.Config.Checks["alive"].Path != "/healthz" {
		t.Errorf("typed config = %+v", m.Config)
	}

	for name, bad := range map[string]map[string]any{
		"restart policy":  {"image": "x", "restart": map[string]any{"policy": "sometimes"}},
		"service port":    {"image": "x", "services": []any{map[string]any{"protocol": "tcp", "internal_port": 0}}},
		"service proto":   {"image": "x", "services": []any{map[string]any{"protocol": "sctp", "internal_port": 80}}},
		"check type":      {"image": "x", "checks": map[string]any{"c": map[string]any{"type": "grpc"}}},
		"two mounts":      {"image": "x", "mounts": []any{map[string]any{"volume": "v1", "path": "/a"}, map[string]any{"volume": "v2", "path": "/b"}}},
		"relative mount":  {"image": "x", "mounts": []any{map[string]any{"volume": "v1", "path": "data"}}},
		"mount no volume": {"image": "x", "mounts": []any{map[string]any{"path": "/data"}}},
	} {
		a := b.call("POST", "/v1/apps/app-1/machines", map[string]any{"config": bad})
		if a.code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, a.code, a.body)
		}
	}
}

func TestMachineNamesUnique(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	b.createApp("app-2")
	first := b.createMachine("app-1", map[string]any{"name": "claw"})
	a := b.want(b.call("POST", "/v1/apps/app-1/machines", map[string]any{"name": "claw", "config": map[string]any{"image": "x"}}), http.StatusConflict)
	if msg, status := a.errBody(t); status != "name_taken" || !strings.Contains(msg, first.ID) {
		t.Errorf("duplicate name: %q %q", msg, status)
	}
	// Unique within an app, not across apps.
	b.createMachine("app-2", map[string]any{"name": "claw"})
	// A destroyed machine's name is free again.
	b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+first.ID+"?force=true", nil), http.StatusOK)
	b.createMachine("app-1", map[string]any{"name": "claw"})
	// Machines without a name get unique generated ones.
	x, y := b.createMachine("app-1", nil), b.createMachine("app-1", nil)
	if x.Name == y.Name {
		t.Errorf("generated names collide: %q", x.Name)
	}
}

func TestWaitParameters(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	m := b.createMachine("app-1", nil)
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/stop", nil), http.StatusOK)

	for _, q := range []string{
		"state=stopped",             // instance_id required for stopped
		"state=starting",            // transient states are not wait targets
		"state=created",             //
		"state=started&timeout=0",   // whole seconds 1..60
		"state=started&timeout=61",  //
		"state=started&timeout=30s", //
	} {
		b.want(b.wait("app-1", m.ID, q), http.StatusBadRequest).errBody(t)
	}
	b.want(b.wait("app-1", m.ID, "state=stopped&instance_id="+m.InstanceID), http.StatusOK)
	b.want(b.wait("app-1", m.ID, "state=stopped&version="+m.InstanceID), http.StatusOK)
	b.want(b.wait("app-1", m.ID, "state=stopped&instance_id=01ZZZZZZZZZZZZZZZZZZZZZZZZ"), http.StatusNotFound)
	b.want(b.wait("app-1", m.ID, "state=settled&timeout=1"), http.StatusOK)
	b.want(b.wait("app-1", m.ID, "state=started,stopped&instance_id="+m.InstanceID), http.StatusOK)
}

func TestSettledWait(t *testing.T) {
	t.Parallel()
	b := setup(t, 30*time.Millisecond)
	b.createApp("app-1")
	m := b.createMachine("app-1", nil)
	// A machine still launching is not settled; it is once started.
	if m.State != "created" {
		t.Fatalf("fresh machine %s", m.State)
	}
	b.want(b.wait("app-1", m.ID, "state=settled&timeout=10"), http.StatusOK)
	if st := b.machine("app-1", m.ID).State; st != "started" {
		t.Errorf("settled at %s, want started", st)
	}
	// A machine created with skip_launch is settled as created.
	idle := b.createMachine("app-1", map[string]any{"skip_launch": true})
	b.want(b.wait("app-1", idle.ID, "state=settled&timeout=1"), http.StatusOK)
}

func TestStartWhileLaunching(t *testing.T) {
	t.Parallel()
	// A long delay keeps the machine launching for the whole test.
	b := setup(t, time.Hour)
	b.createApp("app-1")
	m := b.createMachine("app-1", nil)
	base := "/v1/apps/app-1/machines/" + m.ID
	for _, write := range []struct{ method, path string }{
		{"POST", base + "/start"}, {"POST", base + "/stop"}, {"POST", base + "/restart"}, {"DELETE", base},
	} {
		a := b.want(b.call(write.method, write.path, nil), http.StatusPreconditionFailed)
		if msg, status := a.errBody(t); status != "failed_precondition" || !strings.Contains(msg, "launch") {
			t.Errorf("%s %s: %q %q", write.method, write.path, msg, status)
		}
	}
	// Force still destroys it.
	b.want(b.call("DELETE", base+"?force=true", nil), http.StatusOK)

	// A machine created with skip_launch is not launching: it starts.
	idle := b.createMachine("app-1", map[string]any{"skip_launch": true})
	var out map[string]string
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+idle.ID+"/start", nil), http.StatusOK).decode(t, &out)
	if out["previous_state"] != "created" {
		t.Errorf("previous_state %q", out["previous_state"])
	}
	// Once starting on the user's word, a second start is harmless.
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+idle.ID+"/start", nil), http.StatusOK)
}

func TestMachineStateAnswers(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	m := b.createMachine("app-1", nil)
	base := "/v1/apps/app-1/machines/" + m.ID
	for _, st := range []struct {
		state                string
		start, stop, restart int
		destroyWithoutForce  int
		previousStateOnStart string
	}{
		{"started", 200, 200, 200, 412, "started"},
		{"stopped", 200, 200, 200, 200, "stopped"},
		{"suspended", 200, 200, 200, 200, "suspended"},
		{"failed", 200, 200, 200, 200, "failed"},
		{"stopping", 412, 200, 412, 412, ""},
		{"restarting", 412, 200, 412, 412, ""},
		{"destroying", 412, 412, 412, 200, ""},
	} {
		check := func(method, path string, want int) {
			t.Helper()
			if err := b.sim.SetState("app-1", m.ID, st.state); err != nil {
				t.Fatal(err)
			}
			if a := b.call(method, path, nil); a.code != want {
				t.Errorf("%s %s from %s: %d %s, want %d", method, path, st.state, a.code, a.body, want)
			}
		}
		check("POST", base+"/start", st.start)
		check("POST", base+"/stop", st.stop)
		check("POST", base+"/restart", st.restart)
		check("DELETE", base, st.destroyWithoutForce)
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	a := b.createMachine("app-1", map[string]any{"region": "cdg", "config": map[string]any{"image": "x", "metadata": map[string]string{"mocd_instance_id": "ins_a"}}})
	c := b.createMachine("app-1", map[string]any{"config": map[string]any{"image": "x", "metadata": map[string]string{"mocd_instance_id": "ins_c"}}})
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+c.ID+"/stop", nil), http.StatusOK)

	ids := func(q string) string {
		t.Helper()
		var list []flysim.Machine
		b.want(b.call("GET", "/v1/apps/app-1/machines"+q, nil), http.StatusOK).decode(t, &list)
		var out []string
		for _, m := range list {
			out = append(out, m.ID)
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"":                                  a.ID + "," + c.ID,
		"?state=started":                    a.ID,
		"?state=stopped,started":            a.ID + "," + c.ID,
		"?metadata.mocd_instance_id=ins_c":  c.ID,
		"?metadata.mocd_instance_id=nobody": "",
		"?region=cdg":                       a.ID,
	} {
		if got := ids(q); got != want {
			t.Errorf("list%s = %s, want %s", q, got, want)
		}
	}
	b.want(b.call("GET", "/v1/apps/app-1/machines?state=asleep", nil), http.StatusBadRequest)
	b.want(b.call("GET", "/v1/apps/app-1/machines?include_deleted=maybe", nil), http.StatusBadRequest)
}

func TestMacaroonNeedsFlyV1(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	a := b.want(b.call("GET", "/v1/apps/app-1", nil, "Authorization", "Bearer fm2_abc"), http.StatusUnauthorized)
	if msg, _ := a.errBody(t); !strings.Contains(msg, "FlyV1") {
		t.Errorf("message %q", msg)
	}
	b.want(b.call("GET", "/v1/apps/app-1", nil, "Authorization", "Bearer fo1_x,fm1r_abc"), http.StatusUnauthorized)
	b.want(b.call("GET", "/v1/apps/app-1", nil, "Authorization", "FlyV1 fm2_abc"), http.StatusOK)
	b.want(b.call("GET", "/v1/apps/app-1", nil, "Authorization", "Bearer personal-token"), http.StatusOK)
}

func TestFaultsAppliedResetPropagation(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	create := map[string]any{"name": "lost", "config": map[string]any{"image": "x"}}

	// Applied and reset: the machine exists, the caller got no answer.
	b.sim.InjectFault(flysim.Fault{Method: "POST", Path: "/v1/apps/{app}/machines", Applied: true, Reset: true})
	if got := chaosOutcome(t, b, "POST", "/v1/apps/app-1/machines", create); got != "error" {
		t.Errorf("applied+reset answered %s", got)
	}
	if n := len(b.sim.Machines()[0].Machines); n != 1 {
		t.Fatalf("%d machines after an applied fault", n)
	}
	// Applied with a status: done, and a 502 says otherwise.
	b.sim.InjectFault(flysim.Fault{Method: "POST", Path: "/v1/apps/{app}/machines", Applied: true, Status: 502})
	b.want(b.call("POST", "/v1/apps/app-1/machines", map[string]any{"name": "lost-2", "config": map[string]any{"image": "x"}}), http.StatusBadGateway)
	if n := len(b.sim.Machines()[0].Machines); n != 2 {
		t.Fatalf("%d machines after a second applied fault", n)
	}
	// Reset alone: nothing done.
	b.sim.InjectFault(flysim.Fault{Method: "POST", Path: "/v1/apps/{app}/machines", Reset: true})
	if got := chaosOutcome(t, b, "POST", "/v1/apps/app-1/machines", map[string]any{"name": "never", "config": map[string]any{"image": "x"}}); got != "error" {
		t.Errorf("reset answered %s", got)
	}
	if n := len(b.sim.Machines()[0].Machines); n != 2 {
		t.Fatalf("%d machines after a reset", n)
	}
	// A slow app, even with wait=true.
	b.sim.InjectFault(flysim.Fault{Method: "POST", Path: "/v1/apps", PropagationMS: 3_600_000})
	b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "slow", "org_slug": "personal"}), http.StatusCreated)
	b.want(b.call("GET", "/v1/apps/slow", nil), http.StatusNotFound)
	b.want(b.call("POST", "/_flysim/faults", map[string]any{"reset": true}), http.StatusCreated)
}
