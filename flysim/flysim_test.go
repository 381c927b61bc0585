package flysim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/flysim"
)

// bundle is one emulator behind a real HTTP server.
type bundle struct {
	t   *testing.T
	sim *flysim.Server
	url string
}

func setup(t *testing.T, delay time.Duration) *bundle {
	t.Helper()
	sim := flysim.New(flysim.Options{Delay: delay})
	ts := httptest.NewServer(sim)
	t.Cleanup(func() {
		ts.Close()
		sim.Close()
	})
	return &bundle{t: t, sim: sim, url: ts.URL}
}

// with answers b reporting to t, for subtests.
func (b *bundle) with(t *testing.T) *bundle {
	c := *b
	c.t = t
	return &c
}

type answer struct {
	code int
	hdr  http.Header
	body []byte
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
}

// errBody decodes a Fly-style error and checks its shape.
func (a answer) errBody(t *testing.T) (msg, status string) {
	t.Helper()
	var e map[string]string
	a.decode(t, &e)
	if e["error"] == "" || e["status"] == "" {
		t.Fatalf("error body %s lacks error or status", a.body)
	}
	return e["error"], e["status"]
}

// call sends one request with a token unless headers say otherwise; headers
// are name, value pairs.
func (b *bundle) call(method, path string, body any, headers ...string) answer {
	b.t.Helper()
	return b.callCtx(context.Background(), method, path, body, headers...)
}

func (b *bundle) callCtx(ctx context.Context, method, path string, body any, headers ...string) answer {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			b.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer test-token")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return answer{}
		}
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	if resp.Header.Get("fly-request-id") == "" {
		b.t.Errorf("%s %s: no fly-request-id header", method, path)
	}
	return answer{code: resp.StatusCode, hdr: resp.Header, body: raw}
}

func (b *bundle) want(a answer, code int) answer {
	b.t.Helper()
	if a.code != code {
		b.t.Fatalf("status %d, want %d: %s", a.code, code, a.body)
	}
	return a
}

func (b *bundle) createApp(name string) {
	b.t.Helper()
	b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": name, "org_slug": "personal"}), http.StatusCreated)
}

func (b *bundle) createMachine(app string, in map[string]any) flysim.Machine {
	b.t.Helper()
	if in == nil {
		in = map[string]any{}
	}
	if in["config"] == nil {
		in["config"] = map[string]any{"image": "registry.fly.io/openclaw:1.2"}
	}
	var m flysim.Machine
	b.want(b.call("POST", "/v1/apps/"+app+"/machines", in), http.StatusOK).decode(b.t, &m)
	return m
}

func (b *bundle) machine(app, id string) flysim.Machine {
	b.t.Helper()
	var m flysim.Machine
	b.want(b.call("GET", "/v1/apps/"+app+"/machines/"+id, nil), http.StatusOK).decode(b.t, &m)
	return m
}

func (b *bundle) wait(app, id, query string) answer {
	b.t.Helper()
	return b.call("GET", "/v1/apps/"+app+"/machines/"+id+"/wait?"+query, nil)
}

func TestAuthorizationRequired(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)

	a := b.want(b.call("GET", "/v1/apps/x", nil, "Authorization", ""), http.StatusUnauthorized)
	if _, status := a.errBody(t); status != "unauthorized" {
		t.Errorf("status %q, want unauthorized", status)
	}
	// Admin endpoints are for the operator of the emulator, not the API.
	b.want(b.call("GET", "/_flysim/machines", nil, "Authorization", ""), http.StatusOK)
	// Unknown routes still answer Fly-style JSON.
	b.want(b.call("GET", "/v1/nope", nil), http.StatusNotFound).errBody(t)
}

func TestApps(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)

	var app struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		Status       string `json:"status"`
		Organization struct {
			Slug string `json:"slug"`
		} `json:"organization"`
	}
	b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "inst-1", "org_slug": "acme"}), http.StatusCreated).decode(t, &app)
	if app.ID == "" || app.Name != "inst-1" || app.Status != "deployed" || app.Organization.Slug != "acme" {
		t.Errorf("created app = %+v", app)
	}
	b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "inst-2", "org_slug": "acme"}), http.StatusCreated)

	a := b.want(b.call("POST", "/v1/apps?wait=true", map[string]string{"name": "inst-1", "org_slug": "acme"}), http.StatusUnprocessableEntity)
	if _, status := a.errBody(t); status != "name_taken" {
		t.Errorf("status %q, want name_taken", status)
	}
	for _, bad := range []string{"", "Inst_1", "-x", strings.Repeat("a", 64)} {
		b.want(b.call("POST", "/v1/apps", map[string]string{"name": bad, "org_slug": "acme"}), http.StatusUnprocessableEntity)
	}

	b.want(b.call("GET", "/v1/apps/inst-1", nil), http.StatusOK).decode(t, &app)
	if app.Name != "inst-1" {
		t.Errorf("got app %q", app.Name)
	}
	if _, status := b.want(b.call("GET", "/v1/apps/nope", nil), http.StatusNotFound).errBody(t); status != "not_found" {
		t.Errorf("status %q, want not_found", status)
	}

	m := b.createMachine("inst-1", nil)
	b.want(b.call("DELETE", "/v1/apps/inst-1", nil), http.StatusAccepted)
	b.want(b.call("GET", "/v1/apps/inst-1", nil), http.StatusNotFound)
	b.want(b.call("GET", "/v1/apps/inst-1/machines/"+m.ID, nil), http.StatusNotFound)
	b.want(b.call("DELETE", "/v1/apps/inst-1", nil), http.StatusNotFound)
	if got, _ := b.sim.Machine("inst-1", m.ID); got.State != "" {
		t.Errorf("machine of a deleted app still held: %+v", got)
	}
	if n := len(b.sim.Machines()); n != 1 {
		t.Errorf("flysim holds %d apps, want 1", n)
	}
}

var (
	machineIDRe  = regexp.MustCompile(`^[0-9a-f]{14}$`)
	instanceIDRe = regexp.MustCompile(`^[0-9A-Z]{26}$`)
)

func TestMachineLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")

	m := b.createMachine("app-1", map[string]any{
		"name":   "inst-1",
		"region": "cdg",
		"config": map[string]any{
			"image":    "registry.fly.io/openclaw:1.2",
			"guest":    map[string]any{"cpu_kind": "shared", "cpus": 2, "memory_mb": 1024},
			"env":      map[string]string{"MODE": "prod"},
			"metadata": map[string]string{"instance_id": "inst_1"},
		},
	})
	if !machineIDRe.MatchString(m.ID) || !instanceIDRe.MatchString(m.InstanceID) {
		t.Errorf("id %q instance_id %q have the wrong shape", m.ID, m.InstanceID)
	}
	// With no delay the launch completes before the answer.
	if m.State != "started" || m.Name != "inst-1" || m.Region != "cdg" || m.PrivateIP == "" || m.CreatedAt == "" {
		t.Errorf("created machine = %+v", m)
	}
	if g := m.Config.Guest; g == nil || g.CPUs != 2 || g.MemoryMB != 1024 || g.CPUKind != "shared" {
		t.Errorf("guest = %+v", g)
	}
	if m.Config.Metadata["instance_id"] != "inst_1" || m.Config.Env["MODE"] != "prod" {
		t.Errorf("config = %+v", m.Config)
	}
	if m.ImageRef.Repository != "openclaw" || m.ImageRef.Tag != "1.2" || m.ImageRef.Registry != "registry.fly.io" {
		t.Errorf("image_ref = %+v", m.ImageRef)
	}

	// The raw JSON uses Fly's field names.
	raw := b.want(b.call("GET", "/v1/apps/app-1/machines/"+m.ID, nil), http.StatusOK).body
	for _, field := range []string{`"instance_id"`, `"private_ip"`, `"created_at"`, `"updated_at"`, `"cpu_kind"`, `"memory_mb"`, `"events"`} {
		if !bytes.Contains(raw, []byte(field)) {
			t.Errorf("machine JSON lacks %s: %s", field, raw)
		}
	}

	var list []flysim.Machine
	b.want(b.call("GET", "/v1/apps/app-1/machines", nil), http.StatusOK).decode(t, &list)
	if len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("list = %+v", list)
	}

	b.want(b.call("GET", "/v1/apps/app-1/machines/0000000000000f", nil), http.StatusNotFound).errBody(t)
	b.want(b.call("POST", "/v1/apps/app-1/machines/0000000000000f/start", nil), http.StatusNotFound)

	var ok map[string]bool
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/stop", nil), http.StatusOK).decode(t, &ok)
	if !ok["ok"] {
		t.Errorf("stop answered %v", ok)
	}
	if st := b.machine("app-1", m.ID).State; st != "stopped" {
		t.Fatalf("after stop: %s", st)
	}

	start := func(wantPrev string) {
		t.Helper()
		var out map[string]string
		b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/start", nil), http.StatusOK).decode(t, &out)
		if out["previous_state"] != wantPrev {
			t.Errorf("previous_state = %q, want %q", out["previous_state"], wantPrev)
		}
		if st := b.machine("app-1", m.ID).State; st != "started" {
			t.Errorf("after start: %s", st)
		}
	}
	start("stopped")
	start("started") // a no-op, still a 200

	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/restart", nil), http.StatusOK).decode(t, &ok)
	got := b.machine("app-1", m.ID)
	if got.State != "started" || got.Events[1].Status != "restarting" {
		t.Errorf("after restart: %s, events %+v", got.State, got.Events)
	}

	// A running machine is destroyed only by force.
	a := b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+m.ID, nil), http.StatusPreconditionFailed)
	if msg, _ := a.errBody(t); !strings.Contains(msg, "force") {
		t.Errorf("412 message %q does not mention force", msg)
	}
	b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+m.ID+"?force=true", nil), http.StatusOK)

	// Destroyed machines remain readable but are out of lists and writes.
	if st := b.machine("app-1", m.ID).State; st != "destroyed" {
		t.Errorf("after destroy: %s", st)
	}
	b.want(b.call("GET", "/v1/apps/app-1/machines", nil), http.StatusOK).decode(t, &list)
	if len(list) != 0 {
		t.Errorf("list after destroy = %+v", list)
	}
	b.want(b.call("GET", "/v1/apps/app-1/machines?include_deleted=true", nil), http.StatusOK).decode(t, &list)
	if len(list) != 1 {
		t.Errorf("list with include_deleted = %+v", list)
	}
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/start", nil), http.StatusNotFound)
	b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+m.ID+"?force=true", nil), http.StatusNotFound)
}

func TestSkipLaunchAndKill(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")

	m := b.createMachine("app-1", map[string]any{"skip_launch": true})
	if m.State != "created" {
		t.Fatalf("skip_launch machine is %s", m.State)
	}
	var out map[string]string
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/start", nil), http.StatusOK).decode(t, &out)
	if out["previous_state"] != "created" {
		t.Errorf("previous_state = %q", out["previous_state"])
	}
	// fly-go spells force as kill=true.
	b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+m.ID+"?kill=true", nil), http.StatusOK)

	// A stopped machine needs no force.
	m = b.createMachine("app-1", nil)
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/stop", nil), http.StatusOK)
	b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+m.ID, nil), http.StatusOK)

	b.want(b.call("POST", "/v1/apps/app-1/machines", map[string]any{"config": map[string]any{}}), http.StatusUnprocessableEntity).errBody(t)
	b.want(b.call("POST", "/v1/apps/nope/machines", map[string]any{"config": map[string]any{"image": "x"}}), http.StatusNotFound)
}

func TestTransitionsWithDelay(t *testing.T) {
	t.Parallel()
	// Long enough that "stopping" is still there to see right after the stop
	// call, even on a machine loaded by parallel test binaries.
	b := setup(t, time.Second)
	b.createApp("app-1")

	m := b.createMachine("app-1", nil)
	if m.State != "created" {
		t.Errorf("fresh machine is %s, want created", m.State)
	}
	b.want(b.wait("app-1", m.ID, "state=started&timeout=10"), http.StatusOK)

	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/stop", nil), http.StatusOK)
	if st := b.machine("app-1", m.ID).State; st != "stopping" {
		t.Errorf("just after stop: %s, want stopping", st)
	}
	// state may repeat.
	b.want(b.wait("app-1", m.ID, "state=stopped&state=destroyed&timeout=10&instance_id="+m.InstanceID), http.StatusOK)

	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/restart", nil), http.StatusOK)
	b.want(b.wait("app-1", m.ID, "state=started&timeout=10"), http.StatusOK)

	b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+m.ID+"?force=true", nil), http.StatusOK)
	b.want(b.wait("app-1", m.ID, "state=destroyed&timeout=10"), http.StatusOK)

	got := b.machine("app-1", m.ID)
	var seen []string
	for i := len(got.Events) - 1; i >= 0; i-- {
		seen = append(seen, got.Events[i].Status)
	}
	want := "created starting started stopping stopped starting started destroying destroyed"
	if strings.Join(seen, " ") != want {
		t.Errorf("events %v, want %s", seen, want)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	m := b.createMachine("app-1", nil)

	var ok map[string]bool
	b.want(b.wait("app-1", m.ID, "state=started"), http.StatusOK).decode(t, &ok)
	if !ok["ok"] {
		t.Errorf("wait answered %v", ok)
	}
	b.want(b.wait("app-1", m.ID, "state=bogus"), http.StatusBadRequest)
	b.want(b.wait("app-1", m.ID, "state=started&timeout=soon"), http.StatusBadRequest)
	b.want(b.wait("app-1", "0000000000000f", "state=started"), http.StatusNotFound)

	t.Run("408 on timeout", func(t *testing.T) {
		t.Parallel()
		b := b.with(t)
		a := b.want(b.wait("app-1", m.ID, "state=stopped&timeout=1&instance_id="+m.InstanceID), http.StatusRequestTimeout)
		a.errBody(t)
	})

	t.Run("released by a state change", func(t *testing.T) {
		t.Parallel()
		b := setup(t, 0)
		b.createApp("app-2")
		m := b.createMachine("app-2", nil)
		done := make(chan int)
		go func() {
			resp, err := http.DefaultClient.Do(mustRequest(t, b.url+"/v1/apps/app-2/machines/"+m.ID+"/wait?state=stopped&timeout=30&version="+m.InstanceID))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		// Poll the call counter rather than sleep: the wait is held once counted.
		for b.sim.Calls("GET", "/v1/apps/{app}/machines/{id}/wait") == 0 {
			time.Sleep(time.Millisecond)
		}
		if err := b.sim.SetState("app-2", m.ID, "stopped"); err != nil {
			t.Fatal(err)
		}
		if code := <-done; code != http.StatusOK {
			t.Errorf("held wait answered %d", code)
		}
	})

	t.Run("client cancel ends the wait", func(t *testing.T) {
		t.Parallel()
		b := b.with(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		a := b.callCtx(ctx, "GET", "/v1/apps/app-1/machines/"+m.ID+"/wait?state=destroyed&timeout=60", nil)
		if a.code != 0 {
			t.Errorf("cancelled wait answered %d", a.code)
		}
	})
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer x")
	return req
}

func TestLeases(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")
	m := b.createMachine("app-1", nil)
	base := "/v1/apps/app-1/machines/" + m.ID

	type leaseAnswer struct {
		Status string `json:"status"`
		Data   struct {
			Nonce     string `json:"nonce"`
			ExpiresAt int64  `json:"expires_at"`
			Owner     string `json:"owner"`
			Version   string `json:"version"`
		} `json:"data"`
	}
	b.want(b.call("GET", base+"/lease", nil), http.StatusNotFound)

	var l leaseAnswer
	b.want(b.call("POST", base+"/lease?ttl=30", nil), http.StatusOK).decode(t, &l)
	if l.Status != "success" || l.Data.Nonce == "" || l.Data.Owner == "" || l.Data.Version == "" {
		t.Fatalf("lease = %+v", l)
	}
	if exp := time.Unix(l.Data.ExpiresAt, 0); exp.Before(time.Now().Add(20*time.Second)) || exp.After(time.Now().Add(40*time.Second)) {
		t.Errorf("expires_at %v is not about 30s away", exp)
	}
	nonce := l.Data.Nonce

	var got leaseAnswer
	b.want(b.call("GET", base+"/lease", nil), http.StatusOK).decode(t, &got)
	if got.Data.Nonce != nonce {
		t.Errorf("GET lease nonce %q, want %q", got.Data.Nonce, nonce)
	}

	b.want(b.call("POST", base+"/lease?ttl=30", nil), http.StatusConflict)
	for _, write := range []struct{ method, path string }{
		{"POST", base + "/stop"}, {"POST", base + "/start"}, {"POST", base + "/restart"}, {"DELETE", base + "?force=true"},
	} {
		a := b.want(b.call(write.method, write.path, nil), http.StatusConflict)
		if msg, _ := a.errBody(t); !strings.Contains(msg, "lease currently held by") {
			t.Errorf("%s %s: message %q", write.method, write.path, msg)
		}
		b.want(b.call(write.method, write.path, nil, "fly-machine-lease-nonce", "wrong"), http.StatusConflict)
	}
	b.want(b.call("POST", base+"/stop", nil, "fly-machine-lease-nonce", nonce), http.StatusOK)

	// The holder extends its lease by presenting the nonce.
	b.want(b.call("POST", base+"/lease?ttl=60", nil, "fly-machine-lease-nonce", nonce), http.StatusOK).decode(t, &got)
	if got.Data.Nonce != nonce || got.Data.ExpiresAt <= l.Data.ExpiresAt {
		t.Errorf("refreshed lease = %+v", got)
	}

	b.want(b.call("DELETE", base+"/lease", nil), http.StatusConflict)
	b.want(b.call("DELETE", base+"/lease", nil, "fly-machine-lease-nonce", nonce), http.StatusOK)
	b.want(b.call("DELETE", base+"/lease", nil, "fly-machine-lease-nonce", nonce), http.StatusOK) // idempotent
	b.want(b.call("POST", base+"/start", nil), http.StatusOK)

	// A lease taken at creation comes back as the machine's nonce.
	m2 := b.createMachine("app-1", map[string]any{"lease_ttl": 30})
	if m2.Nonce == "" {
		t.Fatal("create with lease_ttl answered no nonce")
	}
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m2.ID+"/stop", nil), http.StatusConflict)
	b.want(b.call("POST", "/v1/apps/app-1/machines/"+m2.ID+"/stop", nil, "fly-machine-lease-nonce", m2.Nonce), http.StatusOK)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-1")

	// Over HTTP, with the route pattern as registered.
	b.want(b.call("POST", "/_flysim/faults", map[string]any{
		"method": "POST", "path": "/v1/apps/{app}/machines", "status": 503, "count": 2,
	}), http.StatusCreated)
	for range 2 {
		a := b.want(b.call("POST", "/v1/apps/app-1/machines", map[string]any{"config": map[string]any{"image": "x"}}), http.StatusServiceUnavailable)
		a.errBody(t)
	}
	b.createMachine("app-1", nil)
	if n := b.sim.Calls("POST", "/v1/apps/{app}/machines"); n != 3 {
		t.Errorf("counted %d create calls, want 3", n)
	}
	// Other routes and methods are untouched.
	b.want(b.call("GET", "/v1/apps/app-1/machines", nil), http.StatusOK)

	t.Run("prefix", func(t *testing.T) {
		b := b.with(t)
		b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/app-1", Status: 404})
		b.want(b.call("GET", "/v1/apps/app-1/machines", nil), http.StatusNotFound).errBody(t)
		b.want(b.call("GET", "/v1/apps/app-1/machines", nil), http.StatusOK)
	})
	t.Run("method must match", func(t *testing.T) {
		b := b.with(t)
		b.sim.InjectFault(flysim.Fault{Method: "DELETE", Path: "/v1", Status: 500})
		b.want(b.call("GET", "/v1/apps/app-1", nil), http.StatusOK)
		b.want(b.call("DELETE", "/v1/apps/nope", nil), http.StatusInternalServerError)
	})
	t.Run("body and retry-after", func(t *testing.T) {
		b := b.with(t)
		b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/{app}", Status: 429, Body: "slow down", RetryAfter: 3})
		a := b.want(b.call("GET", "/v1/apps/app-1", nil), http.StatusTooManyRequests)
		if string(a.body) != "slow down" || a.hdr.Get("Retry-After") != "3" {
			t.Errorf("body %q Retry-After %q", a.body, a.hdr.Get("Retry-After"))
		}
	})
	t.Run("delay only", func(t *testing.T) {
		b := b.with(t)
		b.sim.InjectFault(flysim.Fault{Path: "/v1/apps/{app}", DelayMS: 1})
		b.want(b.call("GET", "/v1/apps/app-1", nil), http.StatusOK)
	})
	t.Run("until cleared", func(t *testing.T) {
		b := b.with(t)
		b.want(b.call("POST", "/_flysim/faults", map[string]any{"path": "/v1/apps/{app}", "status": 502, "count": -1}), http.StatusCreated)
		for range 3 {
			b.want(b.call("GET", "/v1/apps/app-1", nil), http.StatusBadGateway)
		}
		var pending []flysim.Fault
		b.want(b.call("GET", "/_flysim/faults", nil), http.StatusOK).decode(t, &pending)
		if len(pending) != 1 {
			t.Errorf("pending faults = %+v", pending)
		}
		b.want(b.call("DELETE", "/_flysim/faults", nil), http.StatusOK)
		b.want(b.call("GET", "/v1/apps/app-1", nil), http.StatusOK)
	})
	t.Run("invalid", func(t *testing.T) {
		b := b.with(t)
		b.want(b.call("POST", "/_flysim/faults", map[string]any{"path": "/v1"}), http.StatusBadRequest)
	})
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-b")
	b.createApp("app-a")
	m := b.createMachine("app-a", nil)
	gone := b.createMachine("app-a", nil)
	b.want(b.call("DELETE", "/v1/apps/app-a/machines/"+gone.ID+"?force=true", nil), http.StatusOK)

	var all []struct {
		App      string           `json:"app"`
		Org      string           `json:"org"`
		Machines []flysim.Machine `json:"machines"`
	}
	b.want(b.call("GET", "/_flysim/machines", nil), http.StatusOK).decode(t, &all)
	if len(all) != 2 || all[0].App != "app-a" || all[1].App != "app-b" || all[0].Org != "personal" {
		t.Fatalf("machines = %+v", all)
	}
	if len(all[0].Machines) != 1 || all[0].Machines[0].ID != m.ID || len(all[1].Machines) != 0 {
		t.Errorf("app-a machines = %+v", all[0].Machines)
	}
	b.want(b.call("GET", "/_flysim/machines?include_deleted=true", nil), http.StatusOK).decode(t, &all)
	if len(all[0].Machines) != 2 {
		t.Errorf("with include_deleted: %d machines", len(all[0].Machines))
	}

	var forced flysim.Machine
	b.want(b.call("POST", "/_flysim/apps/app-a/machines/"+m.ID+"/state", map[string]string{"state": "stopped"}), http.StatusOK).decode(t, &forced)
	if forced.State != "stopped" || b.machine("app-a", m.ID).State != "stopped" {
		t.Errorf("forced state = %s", forced.State)
	}
	b.want(b.call("POST", "/_flysim/apps/app-a/machines/"+m.ID+"/state", map[string]string{"state": "dancing"}), http.StatusBadRequest)
	b.want(b.call("POST", "/_flysim/apps/app-a/machines/0000000000000f/state", map[string]string{"state": "stopped"}), http.StatusNotFound)
	if err := b.sim.SetState("nope", m.ID, "stopped"); !errors.Is(err, flysim.ErrNotFound) {
		t.Errorf("SetState on unknown app: %v", err)
	}

	var calls map[string]int
	b.want(b.call("GET", "/_flysim/calls", nil), http.StatusOK).decode(t, &calls)
	if calls["POST /v1/apps"] != 2 || calls["POST /v1/apps/{app}/machines"] != 2 || calls["GET /v1/apps/{app}/machines/{id}"] != 1 {
		t.Errorf("calls = %v", calls)
	}
	if n := b.sim.Calls("", "/v1/apps/{app}/machines/{id}"); n != 2 { // one GET, one DELETE
		t.Errorf("Calls across methods = %d", n)
	}
	b.want(b.call("DELETE", "/_flysim/calls", nil), http.StatusOK)
	if n := b.sim.Calls("POST", "/v1/apps"); n != 0 {
		t.Errorf("after reset: %d", n)
	}
}

// TestConcurrentUse gives the race detector something to look at.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	b := setup(t, time.Millisecond)
	b.createApp("app-1")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			m := b.createMachine("app-1", map[string]any{"name": fmt.Sprintf("m%d", i)})
			b.want(b.wait("app-1", m.ID, "state=started&timeout=10"), http.StatusOK)
			b.want(b.call("POST", "/v1/apps/app-1/machines/"+m.ID+"/stop", nil), http.StatusOK)
			b.want(b.wait("app-1", m.ID, "state=stopped&timeout=10&instance_id="+m.InstanceID), http.StatusOK)
			b.want(b.call("DELETE", "/v1/apps/app-1/machines/"+m.ID, nil), http.StatusOK)
			_ = b.sim.Machines()
			b.want(b.wait("app-1", m.ID, "state=destroyed&timeout=10"), http.StatusOK)
		})
	}
	wg.Wait()
	if n := len(b.sim.Machines()[0].Machines); n != 0 {
		t.Errorf("%d machines left", n)
	}
}
