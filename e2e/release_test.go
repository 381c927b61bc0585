package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/worker"
)

// imageOfVersion is the catalog's image of a version in every System.
func imageOfVersion(t testing.TB, v string) string {
	t.Helper()
	for _, e := range Versions {
		if e.Version == v {
			return e.Image
		}
	}
	t.Fatalf("no version %s in the test catalog", v)
	return ""
}

// versionOfImage is the catalog's version of an image, or "".
func versionOfImage(img string) string {
	for _, e := range Versions {
		if e.Image == img {
			return e.Version
		}
	}
	return ""
}

// oneMachine answers the instance's one live machine, failing otherwise.
func oneMachine(t *testing.T, sys *System, instID string) flysim.Machine {
	t.Helper()
	ms := sys.MachinesOf(instID)
	if len(ms) != 1 {
		t.Fatalf("instance %s has %d machines: %+v", instID, len(ms), ms)
	}
	return ms[0]
}

// healthy reports whether every check of m passes and m is started.
func healthy(m flysim.Machine) bool {
	if m.State != flysim.StateStarted || len(m.Checks) == 0 {
		return false
	}
	for _, c := range m.Checks {
		if c.Status != flysim.CheckPassing {
			return false
		}
	}
	return true
}

// liveVolumes answers the volumes of the instance's app not being destroyed.
func liveVolumes(sys *System, instID string) []flysim.Volume {
	vols, _ := sys.Flysim.Volumes(worker.AppName(instID))
	var out []flysim.Volume
	for _, v := range vols {
		if v.State == flysim.VolumeCreated {
			out = append(out, v)
		}
	}
	return out
}

func createVersion(t *testing.T, sys *System, token, subdomain, version string) string {
	t.Helper()
	body := map[string]any{"subdomain": subdomain, "fly_region": "lhr"}
	if version != "" {
		body["version"] = version
	}
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, body)
	if got := sys.WaitOperation(t, token, op.ID); got.Status != "succeeded" {
		t.Fatalf("create %s: %+v %+v", subdomain, got, got.Error)
	}
	return op.InstanceID
}

func upgrade(t *testing.T, sys *System, token, instID, version string) Operation {
	t.Helper()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/upgrade", token, map[string]string{"version": version})
	if op.Type != "instance.upgrade" {
		t.Fatalf("upgrade operation %+v", op)
	}
	return sys.WaitOperation(t, token, op.ID)
}

func TestVersionsAndPinnedCreate(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")

	var list []struct {
		Version string `json:"version"`
		Image   string `json:"image"`
		Default bool   `json:"default"`
	}
	sys.Do(t, http.MethodGet, "/api/v1/versions", token, nil).JSON(t, &list)
	if len(list) != len(Versions) {
		t.Fatalf("versions %+v", list)
	}

	pinned := createVersion(t, sys, token, "pinned-claw", "1.1.0")
	inst := getInstance(t, sys, token, pinned)
	if inst.Version != "1.1.0" || inst.VolumeGB != 10 || inst.Status != "running" {
		t.Fatalf("pinned instance %+v", inst)
	}
	m := oneMachine(t, sys, pinned)
	if m.Config.Image != imageOfVersion(t, "1.1.0") || !healthy(m) {
		t.Fatalf("machine image %s, checks %+v", m.Config.Image, m.Checks)
	}
	vols := liveVolumes(sys, pinned)
	if len(vols) != 1 || vols[0].Region != "lhr" || vols[0].SizeGB != 10 || vols[0].AttachedMachineID == nil || *vols[0].AttachedMachineID != m.ID {
		t.Fatalf("volumes %+v", vols)
	}
	if len(m.Config.Mounts) != 1 || m.Config.Mounts[0].Volume != vols[0].ID || m.Config.Mounts[0].Path != worker.StatePath {
		t.Fatalf("mounts %+v", m.Config.Mounts)
	}

	// Without a version: the default.
	plain := createVersion(t, sys, token, "default-claw", "")
	if v := getInstance(t, sys, token, plain).Version; v != "1.0.0" {
		t.Fatalf("default version %q", v)
	}
	r := sys.Do(t, http.MethodPost, "/api/v1/instances", token, map[string]any{"subdomain": "no-such", "version": "0.0.1"})
	if r.Status != http.StatusBadRequest || r.Code(t) != "unknown_version" {
		t.Fatalf("unknown version: %d %s", r.Status, r.Body)
	}
	// A business instance gets the business volume.
	_, btoken := sys.NewAccount(t, "business")
	if got := getInstance(t, sys, btoken, createVersion(t, sys, btoken, "big-claw", "")).VolumeGB; got != 40 {
		t.Fatalf("business volume %d GB", got)
	}
}

func TestUpgradeHealthyKeepsTheVolume(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	instID := createVersion(t, sys, token, "up-claw", "1.0.0")
	before := oneMachine(t, sys, instID)
	vol := before.Config.Mounts[0].Volume

	// A restart keeps the volume.
	restart := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/restart", token, nil)
	if d := sys.WaitOperation(t, token, restart.ID); d.Status != "succeeded" {
		t.Fatalf("restart %+v", d)
	}
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/stop", token, nil)
	sys.WaitOperation(t, token, stop.ID)
	start := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/start", token, nil)
	sys.WaitOperation(t, token, start.ID)

	done := upgrade(t, sys, token, instID, "1.1.0")
	if done.Status != "succeeded" || done.Error != nil {
		t.Fatalf("upgrade %+v %+v", done, done.Error)
	}
	inst := getInstance(t, sys, token, instID)
	if inst.Version != "1.1.0" || inst.Status != "running" {
		t.Fatalf("instance after upgrade %+v", inst)
	}
	m := oneMachine(t, sys, instID)
	if m.ID != before.ID || m.Config.Image != imageOfVersion(t, "1.1.0") || !healthy(m) {
		t.Fatalf("machine after upgrade %+v", m)
	}
	if len(m.Config.Mounts) != 1 || m.Config.Mounts[0].Volume != vol {
		t.Fatalf("mounts after upgrade %+v, want volume %s", m.Config.Mounts, vol)
	}
	if vols := liveVolumes(sys, instID); len(vols) != 1 || vols[0].ID != vol {
		t.Fatalf("volumes after restart, stop, start and upgrade: %+v", vols)
	}
	// The lease is given back.
	if _, err := store.OperationByID(context.Background(), sys.Store.DB, done.ID); err != nil {
		t.Fatal(err)
	}

	// Upgrading to the version it runs touches nothing.
	updates := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}")
	if again := upgrade(t, sys, token, instID, "1.1.0"); again.Status != "succeeded" {
		t.Fatalf("same-version upgrade %+v", again)
	}
	if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}"); n != updates {
		t.Fatalf("a same-version upgrade updated the machine (%d → %d calls)", updates, n)
	}
	// A downgrade is an upgrade like any other.
	if down := upgrade(t, sys, token, instID, "1.0.0"); down.Status != "succeeded" {
		t.Fatalf("downgrade %+v", down)
	}
	if v := getInstance(t, sys, token, instID).Version; v != "1.0.0" {
		t.Fatalf("version after downgrade %s", v)
	}

	// A stopped instance is checked on the new version and stays stopped.
	stop = accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/stop", token, nil)
	sys.WaitOperation(t, token, stop.ID)
	if d := upgrade(t, sys, token, instID, "1.1.0"); d.Status != "succeeded" {
		t.Fatalf("upgrade of a stopped instance %+v", d)
	}
	if inst := getInstance(t, sys, token, instID); inst.Status != "stopped" || inst.Version != "1.1.0" {
		t.Fatalf("stopped instance after upgrade %+v", inst)
	}
	if m := oneMachine(t, sys, instID); m.State != flysim.StateStopped || m.Config.Image != imageOfVersion(t, "1.1.0") {
		t.Fatalf("machine %s on %s", m.State, m.Config.Image)
	}

	// Delete takes the volume with it.
	del := accept(t, sys, http.MethodDelete, "/api/v1/instances/"+instID, token, nil)
	if d := sys.WaitOperation(t, token, del.ID); d.Status != "succeeded" {
		t.Fatalf("delete %+v", d)
	}
	if vols := liveVolumes(sys, instID); len(vols) != 0 {
		t.Fatalf("volumes after delete %+v", vols)
	}
	if _, ok := sys.Flysim.Volumes(worker.AppName(instID)); ok {
		t.Fatal("the app outlived the delete")
	}
}

func TestUnhealthyUpgradeRollsBack(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	instID := createVersion(t, sys, token, "rollback-claw", "1.0.0")
	vol := oneMachine(t, sys, instID).Config.Mounts[0].Volume
	sys.Flysim.SetImageHealth(imageOfVersion(t, "2.0.0"), false)

	done := upgrade(t, sys, token, instID, "2.0.0")
	if done.Status != "failed" || done.Error == nil || done.Error.Code != "upgrade_rolled_back" ||
		!strings.Contains(done.Error.Message, "2.0.0") || !strings.Contains(done.Error.Message, "gateway") {
		t.Fatalf("upgrade to an unhealthy version: %+v %+v", done, done.Error)
	}
	inst := getInstance(t, sys, token, instID)
	if inst.Version != "1.0.0" || inst.Status != "running" {
		t.Fatalf("instance after the rollback %+v", inst)
	}
	m := oneMachine(t, sys, instID)
	if m.Config.Image != imageOfVersion(t, "1.0.0") || !healthy(m) || m.Config.Mounts[0].Volume != vol {
		t.Fatalf("machine after the rollback: image %s, checks %+v, mounts %+v", m.Config.Image, m.Checks, m.Config.Mounts)
	}
	// The machine really ran the new image before it was rolled back.
	if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}"); n != 2 {
		t.Fatalf("%d machine updates, want the upgrade and the rollback", n)
	}
	// The instance keeps working: a later healthy upgrade succeeds.
	if d := upgrade(t, sys, token, instID, "1.1.0"); d.Status != "succeeded" {
		t.Fatalf("next upgrade %+v", d)
	}
	// The events of runs that recorded their progress (a rollback's
	// reason, the machine's state) on the way say what the api says.
	eventsSayWhatTheAPISays(t, sys, token, instID)
}

// TestWorkerKilledMidUpgrade kills a real worker process with SIGKILL
// while it upgrades (healthy) or rolls back (unhealthy), starts another,
// and checks that the instance ends on exactly one of the two versions, the
// one its machine runs, with a truthful status.
func TestWorkerKilledMidUpgrade(t *testing.T) {
	t.Parallel()
	bin := buildMocd(t)
	for _, tc := range []struct {
		name, target string
		unhealthy    bool
	}{
		{"healthy", "1.1.0", false},
		{"unhealthy", "2.0.0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sys := Start(t, Options{FlysimDelay: 300 * time.Millisecond})
			_, token := sys.NewAccount(t, "pro")
			instID := createVersion(t, sys, token, "killed-"+tc.name, "1.0.0")
			sys.StopWorker()
			if tc.unhealthy {
				sys.Flysim.SetImageHealth(imageOfVersion(t, tc.target), false)
			}
			first := startWorkerProcess(t, sys, bin, "MOC_UPGRADE_TIMEOUT=2s")
			op := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/upgrade", token, map[string]string{"version": tc.target})
			// Kill it once the machine is being moved to the new image.
			testenv.Eventually(t, "the machine being updated", func() bool {
				return oneMachine(t, sys, instID).Config.Image == imageOfVersion(t, tc.target)
			})
			if err := first.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = first.Wait()
			killedAt := time.Now()
			startWorkerProcess(t, sys, bin, "MOC_UPGRADE_TIMEOUT=2s")
			done := sys.WaitOperation(t, token, op.ID)
			t.Logf("upgrade finished %s after the kill: %s %+v", time.Since(killedAt).Round(100*time.Millisecond), done.Status, done.Error)

			inst := getInstance(t, sys, token, instID)
			m := oneMachine(t, sys, instID)
			if got := versionOfImage(m.Config.Image); got != inst.Version || (got != "1.0.0" && got != tc.target) {
				t.Fatalf("instance says %s, its machine runs %s (%s)", inst.Version, m.Config.Image, got)
			}
			if inst.Status != "running" || !healthy(m) {
				t.Fatalf("instance %s, machine %s with checks %+v", inst.Status, m.State, m.Checks)
			}
			switch {
			case done.Status == "succeeded" && inst.Version == tc.target:
			case done.Status == "failed" && done.Error != nil && done.Error.Code == "upgrade_rolled_back" && inst.Version == "1.0.0":
			default:
				t.Fatalf("operation %s %+v but the instance runs %s", done.Status, done.Error, inst.Version)
			}
			if tc.unhealthy && done.Status != "failed" {
				t.Fatalf("an unhealthy version was kept: %+v", done)
			}
		})
	}
}

// secretRecorder keeps every answer a test received.
type secretRecorder struct {
	mu      sync.Mutex
	answers []string
}

func (r *secretRecorder) do(t *testing.T, sys *System, method, path, token string, body any) *Response {
	t.Helper()
	resp := sys.Do(t, method, path, token, body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers = append(r.answers, fmt.Sprintf("%d %v %s", resp.Status, resp.Header, resp.Body))
	return resp
}

func TestSecretsReachTheMachineAndNothingElse(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	acct, token := sys.NewAccount(t, "pro")
	instID := createVersion(t, sys, token, "secret-claw", "")
	base := "/api/v1/instances/" + instID + "/secrets"
	rec := &secretRecorder{}

	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	value := "sk-ant-test-" + hex.EncodeToString(raw)
	// The receiver lives as long as the whole test: it closes on the
	// parent's cleanup, not a step's.
	hook := newReceiver(t, nil)
	createEndpoint(t, sys, token, hook.srv.URL, "operation.succeeded", "operation.failed", "instance.status_changed")

	var op Operation
	var list []struct {
		Name      string    `json:"name"`
		Digest    string    `json:"digest"`
		UpdatedAt time.Time `json:"updated_at"`
	}

	step(t, "a PUT configures the machine", func(t *testing.T) {
		put := rec.do(t, sys, http.MethodPut, base+"/ANTHROPIC_API_KEY", token, map[string]string{"value": value})
		if put.Status != http.StatusAccepted {
			t.Fatalf("PUT secret: %d %s", put.Status, put.Body)
		}
		put.JSON(t, &op)
		if op.Type != "instance.configure" {
			t.Fatalf("operation %+v", op)
		}
		if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
			t.Fatalf("configure %+v %+v", d, d.Error)
		}
		m := oneMachine(t, sys, instID)
		if m.Config.Env["ANTHROPIC_API_KEY"] != value || !healthy(m) {
			t.Fatalf("the machine's env lacks the secret (env names %v), or it is unhealthy", keys(m.Config.Env))
		}
		if inst := getInstance(t, sys, token, instID); inst.Status != "running" {
			t.Fatalf("instance %s after configure", inst.Status)
		}
	})

	step(t, "the list shows a digest, the same for the same value", func(t *testing.T) {
		rec.do(t, sys, http.MethodGet, base, token, nil).JSON(t, &list)
		if len(list) != 1 || list[0].Name != "ANTHROPIC_API_KEY" || !strings.HasPrefix(list[0].Digest, "hmac-sha256:") {
			t.Fatalf("secrets %+v", list)
		}
		// Setting the same value again gives the same digest; another, another.
		first := list[0].Digest
		d := rec.do(t, sys, http.MethodPut, base+"/ANTHROPIC_API_KEY", token, map[string]string{"value": value})
		d.JSON(t, &op)
		sys.WaitOperation(t, token, op.ID)
		rec.do(t, sys, http.MethodGet, base, token, nil).JSON(t, &list)
		if list[0].Digest != first {
			t.Fatalf("digest changed for the same value: %s → %s", first, list[0].Digest)
		}
	})

	step(t, "bad names and sizes are refused", func(t *testing.T) {
		for name, want := range map[string]int{"FLY_API_TOKEN": 400, "MOC_X": 400, "lower": 400, "PATH": 400} {
			if r := rec.do(t, sys, http.MethodPut, base+"/"+name, token, map[string]string{"value": "x"}); r.Status != want {
				t.Errorf("PUT %s: %d %s", name, r.Status, r.Body)
			}
		}
		if r := rec.do(t, sys, http.MethodPut, base+"/BIG", token, map[string]string{"value": strings.Repeat("x", 32<<10+1)}); r.Status != 400 {
			t.Errorf("a value over 32 KiB: %d", r.Status)
		}
		if r := rec.do(t, sys, http.MethodPut, base+"/BIG", token, map[string]string{"value": strings.Repeat("x", 32<<10)}); r.Status != 202 {
			t.Errorf("a value of 32 KiB: %d %s", r.Status, r.Body)
		}
	})

	step(t, "64 secrets at most", func(t *testing.T) {
		// Fill up to the limit in the store, then ask for one more.
		ctx := context.Background()
		for i := 0; len(list) < 64; i++ {
			sealed, err := sys.SecretBox.Seal("filler")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := store.PutSecret(ctx, sys.Store.DB, instID, fmt.Sprintf("FILL_%02d", i), sealed, "hmac-sha256:"+strings.Repeat("0", 64)); err != nil {
				t.Fatal(err)
			}
			rec.do(t, sys, http.MethodGet, base, token, nil).JSON(t, &list)
		}
		if r := rec.do(t, sys, http.MethodPut, base+"/ONE_MORE", token, map[string]string{"value": "x"}); r.Status != 403 || r.Code(t) != "secret_limit_reached" {
			t.Fatalf("65th secret: %d %s", r.Status, r.Body)
		}
		if r := rec.do(t, sys, http.MethodPut, base+"/ANTHROPIC_API_KEY", token, map[string]string{"value": value}); r.Status != 202 {
			t.Fatalf("replacing a secret at the limit: %d %s", r.Status, r.Body)
		}
	})

	step(t, "delete takes it out of the machine's env", func(t *testing.T) {
		del := rec.do(t, sys, http.MethodDelete, base+"/ANTHROPIC_API_KEY", token, nil)
		del.JSON(t, &op)
		if d := sys.WaitOperation(t, token, op.ID); d.Status != "succeeded" {
			t.Fatalf("configure after delete %+v", d)
		}
		if _, ok := oneMachine(t, sys, instID).Config.Env["ANTHROPIC_API_KEY"]; ok {
			t.Fatal("a deleted secret is still in the machine's env")
		}
		if r := rec.do(t, sys, http.MethodDelete, base+"/ANTHROPIC_API_KEY", token, nil); r.Status != 404 {
			t.Fatalf("deleting it again: %d", r.Status)
		}
	})

	step(t, "the value is nowhere else", func(t *testing.T) {
		for _, p := range []string{
			"/api/v1/operations?limit=200", "/api/v1/logs?limit=200", "/api/v1/instances", "/api/v1/instances/" + instID,
			"/api/v1/instances/" + instID + "/events?limit=200", "/api/v1/account", "/api/v1/usage",
		} {
			if r := rec.do(t, sys, http.MethodGet, p, token, nil); r.Status != 200 {
				t.Fatalf("GET %s: %d", p, r.Status)
			}
		}
		rec.answers = append(rec.answers, string(sys.Do(t, http.MethodGet, "/metrics", "", nil).Body))
		testenv.Eventually(t, "the webhooks of the configure operations", func() bool { return len(hook.requests()) >= 3 })
		for _, req := range hook.requests() {
			rec.answers = append(rec.answers, fmt.Sprintf("%v %s", req.Header, req.Body))
		}
		for i, a := range rec.answers {
			if strings.Contains(a, value) {
				t.Errorf("answer %d holds the secret value: %.200s", i, a)
			}
		}
		if strings.Contains(sys.Logs(), value) {
			t.Error("a log line holds the secret value")
		}
		grepDatabase(t, sys, value)
		grepRedis(t, sys, value)
	})
	_ = acct
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// grepDatabase fails the test if any row of any table, as text, holds s.
func grepDatabase(t *testing.T, sys *System, s string) {
	t.Helper()
	ctx := context.Background()
	var tables []string
	if err := sys.Store.DB.SelectContext(ctx, &tables,
		`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`); err != nil {
		t.Fatal(err)
	}
	if len(tables) < 5 {
		t.Fatalf("only tables %v", tables)
	}
	for _, tbl := range tables {
		var n int
		q := fmt.Sprintf(`SELECT count(*) FROM %q t WHERE strpos(t::text, $1) > 0`, tbl)
		if err := sys.Store.DB.GetContext(ctx, &n, q, s); err != nil {
			t.Fatalf("%s: %v", tbl, err)
		}
		if n > 0 {
			t.Errorf("table %s has %d rows holding the secret value", tbl, n)
		}
	}
}

// grepRedis fails the test if any value in Redis holds s.
func grepRedis(t *testing.T, sys *System, s string) {
	t.Helper()
	ctx := context.Background()
	rc := sys.Redis.Client()
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var vals []string
		switch typ, _ := rc.Type(ctx, k).Result(); typ {
		case "string":
			v, _ := rc.Get(ctx, k).Result()
			vals = []string{v}
		case "hash":
			m, _ := rc.HGetAll(ctx, k).Result()
			for f, v := range m {
				vals = append(vals, f, v)
			}
		case "list":
			vals, _ = rc.LRange(ctx, k, 0, -1).Result()
		case "set":
			vals, _ = rc.SMembers(ctx, k).Result()
		case "zset":
			vals, _ = rc.ZRange(ctx, k, 0, -1).Result()
		}
		for _, v := range append(vals, k) {
			if strings.Contains(v, s) {
				t.Errorf("redis key %s holds the secret value", k)
			}
		}
	}
}

func TestReleaseRoutesAreTenantIsolated(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	_, other := sys.NewAccount(t, "pro")
	instID := createVersion(t, sys, token, "mine-claw", "")
	base := "/api/v1/instances/" + instID
	if r := sys.Do(t, http.MethodPut, base+"/secrets/KEY", token, map[string]string{"value": "v"}); r.Status != 202 {
		t.Fatalf("owner PUT: %d", r.Status)
	}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, base + "/secrets", nil},
		{http.MethodPut, base + "/secrets/KEY", map[string]string{"value": "stolen"}},
		{http.MethodDelete, base + "/secrets/KEY", nil},
		{http.MethodPost, base + "/upgrade", map[string]string{"version": "1.1.0"}},
		{http.MethodPost, base + "/upgrade", map[string]string{"version": "9.9.9"}},
	} {
		if r := sys.Do(t, c.method, c.path, other, c.body); r.Status != 404 || r.Code(t) != "not_found" {
			t.Errorf("another account's %s %s: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	// Nothing of the owner's changed.
	var list []struct{ Name string }
	sys.Do(t, http.MethodGet, base+"/secrets", token, nil).JSON(t, &list)
	if len(list) != 1 {
		t.Fatalf("owner's secrets %+v", list)
	}
	if n := countOps(t, sys, instID, "instance.upgrade"); n != 0 {
		t.Fatalf("%d upgrades accepted from another account", n)
	}
}
