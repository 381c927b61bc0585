package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/versions"
	"github.com/myopenclaw/mocd/worker"
)

// soakSize reads the soak's size from the environment: MOC_SOAK_CALLS
// lifecycle calls (default 200, which fits the normal suite; `make soak`
// asks for more), MOC_SOAK_CHAOS the share of Fly calls that fail (default
// 0.06) and MOC_SOAK_SEED the chaos seed (default 1).
func soakSize(t *testing.T) (calls int, chaos float64, seed uint64) {
	t.Helper()
	calls, chaos, seed = 200, 0.06, 1
	if v := os.Getenv("MOC_SOAK_CALLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("MOC_SOAK_CALLS=%q: want a number of calls, at least 10", v)
		}
		calls = n
	}
	if v := os.Getenv("MOC_SOAK_CHAOS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 0.5 {
			t.Fatalf("MOC_SOAK_CHAOS=%q: want a share from 0 to 0.5", v)
		}
		chaos = f
	}
	if v := os.Getenv("MOC_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MOC_SOAK_SEED=%q: %v", v, err)
		}
		seed = n
	}
	return calls, chaos, seed
}

// TestSoak runs mocd scaled out — two `mocd api` and two `mocd worker`
// processes on one Postgres and one Redis — against flysim in chaos mode,
// drives a few hundred calls from concurrent clients through both apis
// (lifecycle calls, upgrades to a healthy version and to one whose health
// check never passes, secrets put and deleted), SIGKILLs each worker once
// in the middle and starts it again, and then checks the end state: every
// operation finished; every live instance has exactly one machine, in the
// state its status says, running the image of the version the instance
// records, with exactly the instance's secrets in its environment, and
// exactly one volume, the one it records, mounted by that machine; and
// flysim holds no app, machine or volume that belongs to no live instance.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not in -short")
	}
	t.Parallel()
	calls, chaos, seed := soakSize(t)
	bin := buildMocd(t)
	sweptApps, sweptMachines, sweptVolumes := &atomic.Int64{}, &atomic.Int64{}, &atomic.Int64{}
	sys := Start(t, Options{
		FlysimDelay: 20 * time.Millisecond,
		Flysim: func(o *flysim.Options) {
			o.Chaos, o.Seed, o.ChaosSlow = chaos, seed, 300*time.Millisecond
		},
		Worker: func(o *worker.Options) {
			o.OnOrphanSwept = func(kind string) {
				switch kind {
				case "app":
					sweptApps.Add(1)
				case "volume":
					sweptVolumes.Add(1)
				default:
					sweptMachines.Add(1)
				}
			}
		},
	})
	sys.StopWorker() // the processes do the work; the in-process worker sweeps at the end
	// The catalog: the System's versions and one whose image never passes
	// its health check (upgrades to it are rolled back).
	catalog := append(slices.Clone(Versions), versions.Version{Version: soakBadVersion, Image: soakBadImage})
	sys.Flysim.SetImageHealth(soakBadImage, false)
	catalogFile := filepath.Join(t.TempDir(), "versions.json")
	if raw, err := json.Marshal(catalog); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(catalogFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	began := time.Now()

	apis := []string{
		startAPIProcess(t, sys, bin, "MOC_VERSIONS_FILE="+catalogFile),
		startAPIProcess(t, sys, bin, "MOC_VERSIONS_FILE="+catalogFile),
	}
	workers := []*workerProcess{soakWorker(t, sys, bin), soakWorker(t, sys, bin)}
	var names []string
	for _, v := range catalog {
		names = append(names, v.Version)
	}

	const clients = 6
	var (
		sent, accepted, refused atomic.Int64
		kills                   int
		mu                      sync.Mutex
		opIDs                   []string
	)
	perClient := calls / clients
	var wg sync.WaitGroup
	for c := range clients {
		_, token := sys.NewAccount(t, "business")
		wg.Go(func() {
			cl := &soakClient{t: t, apis: apis, token: token, rng: rand.New(rand.NewPCG(seed, uint64(c))), name: fmt.Sprintf("soak%d", c),
				versions: names, secrets: map[string]map[string]bool{}}
			for i := range perClient {
				id, ok := cl.step(i)
				sent.Add(1)
				if !ok {
					refused.Add(1)
					continue
				}
				accepted.Add(1)
				mu.Lock()
				opIDs = append(opIDs, id)
				mu.Unlock()
			}
		})
	}
	// Each worker is killed once, a third and two thirds of the way in,
	// and started again a moment later.
	for i, w := range workers {
		for sent.Load() < int64(calls*(i+1)/3) {
			time.Sleep(20 * time.Millisecond)
		}
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		kills++
		time.Sleep(200 * time.Millisecond)
		workers[i] = soakWorker(t, sys, bin)
	}
	wg.Wait()
	allSent := time.Since(began)

	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var open int
		if err := sys.Store.DB.GetContext(ctx, &open, `SELECT count(*) FROM operations WHERE status IN ('pending', 'running')`); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d operations still unfinished 3 minutes after the last call", open)
		}
		time.Sleep(100 * time.Millisecond)
	}
	finished := time.Since(began)

	// Orphans: what flysim holds that no live instance owns, before the
	// sweep; then the in-process worker (reconciling every 500ms) sweeps.
	found := soakOrphans(t, sys)
	orphansFound := len(found)
	if orphansFound > 0 {
		t.Logf("soak: orphans before the final sweep: %v", found)
	}
	for _, w := range workers {
		_ = w.Process.Signal(syscall.SIGTERM)
		_ = w.Wait()
	}
	sys.StartWorker()
	testenv.Eventually(t, "the reconciler to sweep every orphan", func() bool { return len(soakOrphans(t, sys)) == 0 })

	// The end state.
	var ops []struct {
		Status  string  `db:"status"`
		Code    *string `db:"error_code"`
		Message *string `db:"error_message"`
		Type    string  `db:"type"`
	}
	if err := sys.Store.DB.SelectContext(ctx, &ops, `SELECT status, error_code, error_message, type FROM operations`); err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, op := range ops {
		k := op.Status
		if op.Code != nil {
			k += ":" + *op.Code
		}
		outcomes[k]++
		if op.Status != "succeeded" && op.Status != "failed" && op.Status != "cancelled" {
			t.Errorf("operation left %s", op.Status)
		}
		if op.Code != nil && *op.Code == "fly_rejected" {
			t.Errorf("a %s operation was rejected by flysim (the worker sent something Fly refuses): %s", op.Type, deref(op.Message))
		}
	}
	var insts []struct {
		ID      string  `db:"id"`
		Status  string  `db:"status"`
		Version string  `db:"version"`
		Image   string  `db:"image"`
		Volume  *string `db:"fly_volume_id"`
		// Unconfigured: a configure of the instance failed, so its
		// machine may lack the secrets stored since.
		Unconfigured bool `db:"unconfigured"`
	}
	if err := sys.Store.DB.SelectContext(ctx, &insts, `SELECT i.id, i.status, i.version, i.image, i.fly_volume_id,
			EXISTS (SELECT 1 FROM operations o WHERE o.instance_id = i.id AND o.type = 'instance.configure' AND o.status <> 'succeeded') AS unconfigured
		FROM instances i`); err != nil {
		t.Fatal(err)
	}
	var secretRows []struct {
		InstanceID string `db:"instance_id"`
		Name       string `db:"name"`
	}
	if err := sys.Store.DB.SelectContext(ctx, &secretRows, `SELECT instance_id, name FROM instance_secrets`); err != nil {
		t.Fatal(err)
	}
	secretsOf := map[string][]string{}
	for _, r := range secretRows {
		secretsOf[r.InstanceID] = append(secretsOf[r.InstanceID], r.Name)
	}
	imageOf := map[string]string{}
	for _, v := range catalog {
		imageOf[v.Version] = v.Image
	}
	held := map[string][]flysim.Machine{}
	for _, a := range sys.Flysim.Machines() {
		held[a.App] = a.Machines
	}
	statuses := map[string]int{}
	volumes := 0
	for _, inst := range insts {
		statuses[inst.Status]++
		app := worker.AppName(inst.ID)
		ms := held[app]
		vols := soakVolumes(sys, app)
		volumes += len(vols)
		want := map[string]string{"running": "started", "stopped": "stopped"}[inst.Status]
		switch inst.Status {
		case "deleted":
			if _, ok := held[app]; ok {
				t.Errorf("deleted instance %s still has its app", inst.ID)
			}
			if len(vols) != 0 {
				t.Errorf("deleted instance %s still has volumes %v", inst.ID, vols)
			}
		case "running", "stopped":
			if len(ms) != 1 || ms[0].State != want || ms[0].Config.Metadata[worker.MetadataInstanceID] != inst.ID {
				t.Errorf("%s instance %s has machines %+v, want exactly one %s", inst.Status, inst.ID, ms, want)
				continue
			}
			m := ms[0]
			if inst.Image != imageOf[inst.Version] || m.Config.Image != inst.Image {
				t.Errorf("%s instance %s records version %s (image %q; the catalog's %q) and its machine runs %q",
					inst.Status, inst.ID, inst.Version, inst.Image, imageOf[inst.Version], m.Config.Image)
			}
			if env := slices.Sorted(maps.Keys(m.Config.Env)); !inst.Unconfigured && !slices.Equal(env, slices.Sorted(slices.Values(secretsOf[inst.ID]))) {
				t.Errorf("%s instance %s has secrets %v and its machine the variables %v", inst.Status, inst.ID, secretsOf[inst.ID], env)
			}
			if len(vols) != 1 || vols[0].ID != deref(inst.Volume) || vols[0].AttachedMachineID == nil || *vols[0].AttachedMachineID != m.ID ||
				len(m.Config.Mounts) != 1 || m.Config.Mounts[0].Volume != vols[0].ID {
				t.Errorf("%s instance %s records volume %q and has volumes %v; its machine %s mounts %+v, want exactly that one",
					inst.Status, inst.ID, deref(inst.Volume), vols, m.ID, m.Config.Mounts)
			}
		case "failed":
			if len(ms) > 1 || len(vols) > 1 {
				t.Errorf("failed instance %s has %d machines and %d volumes", inst.ID, len(ms), len(vols))
			}
		default:
			t.Errorf("instance %s left %s", inst.ID, inst.Status)
		}
	}
	var lat struct {
		P50 float64 `db:"p50"`
		P95 float64 `db:"p95"`
		Max float64 `db:"max"`
	}
	if err := sys.Store.DB.GetContext(ctx, &lat, `SELECT
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p50,
		percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) AS p95,
		max(extract(epoch FROM finished_at - created_at)) AS max FROM operations`); err != nil {
		t.Fatal(err)
	}
	t.Logf("soak: calls sent in %s; accept→finish p50 %.1fs p95 %.1fs max %.1fs", allSent.Round(100*time.Millisecond), lat.P50, lat.P95, lat.Max)
	faults := sys.Flysim.ChaosStats()
	t.Logf("soak: %d calls sent by %d clients through 2 apis (%d accepted, %d refused as the API says), %d operations %v; "+
		"instances %v; %d Fly faults injected %v (seed %d, chaos %.2f); %d worker kills; all operations finished %s after the first call; "+
		"orphans found %d, swept %d apps, %d machines and %d volumes, left 0; %d volumes held at the end",
		sent.Load(), clients, accepted.Load(), refused.Load(), len(ops), sortedCounts(outcomes), sortedCounts(statuses),
		sys.Flysim.ChaosTotal(), sortedCounts(faults), seed, chaos, kills, finished.Round(100*time.Millisecond),
		orphansFound, sweptApps.Load(), sweptMachines.Load(), sweptVolumes.Load(), volumes)
	if len(opIDs) != int(accepted.Load()) || len(ops) < len(opIDs) {
		t.Errorf("%d operations in Postgres for %d accepted calls", len(ops), len(opIDs))
	}
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return "{" + b.String() + "}"
}

// soakOrphans answers what flysim holds that belongs to no live instance:
// moc- apps of no live instance, and machines and volumes of a live
// instance's app other than the ones the instance records.
func soakOrphans(t *testing.T, sys *System) []string {
	t.Helper()
	var insts []struct {
		ID      string  `db:"id"`
		Machine *string `db:"fly_machine_id"`
		Volume  *string `db:"fly_volume_id"`
	}
	if err := sys.Store.DB.SelectContext(context.Background(), &insts,
		`SELECT id, fly_machine_id, fly_volume_id FROM instances WHERE status <> 'deleted'`); err != nil {
		t.Fatal(err)
	}
	type keep struct{ machine, volume string }
	live := map[string]keep{}
	for _, i := range insts {
		live[worker.AppName(i.ID)] = keep{deref(i.Machine), deref(i.Volume)}
	}
	var out []string
	for _, a := range sys.Flysim.Machines() {
		k, ok := live[a.App]
		if !ok {
			out = append(out, "app "+a.App)
			continue
		}
		for _, m := range a.Machines {
			if m.ID != k.machine {
				out = append(out, "machine "+a.App+"/"+m.ID)
			}
		}
		for _, v := range soakVolumes(sys, a.App) {
			if v.ID != k.volume {
				out = append(out, "volume "+a.App+"/"+v.ID)
			}
		}
	}
	return out
}

// soakVolumes answers the volumes of app that exist (not being
// destroyed): none when the app is gone.
func soakVolumes(sys *System, app string) []flysim.Volume {
	all, _ := sys.Flysim.Volumes(app)
	var out []flysim.Volume
	for _, v := range all {
		if v.State == flysim.VolumeCreated {
			out = append(out, v)
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// The soak's version whose health check never passes: an upgrade to it is
// rolled back.
const (
	soakBadVersion = "9.9.9-unhealthy"
	soakBadImage   = "registry.example/openclaw:unhealthy"
)

// soakClient is one customer's script: it creates instances and drives
// them with lifecycle calls, upgrades and secrets, through either api at
// random.
type soakClient struct {
	t        *testing.T
	apis     []string
	token    string
	rng      *rand.Rand
	name     string
	live     []string // instances it has not deleted
	made     int
	versions []string                   // the catalog, the unhealthy version included
	secrets  map[string]map[string]bool // names set on each live instance
}

// step sends one call; it answers the operation id, or false when the api
// refused the call for a reason a client must expect (the instance is
// being deleted, a rate limit, the quota).
func (c *soakClient) step(i int) (string, bool) {
	method, path, body := http.MethodPost, "", any(nil)
	switch r := c.rng.IntN(10); {
	case len(c.live) < 2 || (r == 0 && len(c.live) < 5):
		c.made++
		path, body = "/api/v1/instances", map[string]string{"subdomain": fmt.Sprintf("%s-%d", c.name, c.made)}
	case r == 1 && len(c.live) > 2:
		k := c.rng.IntN(len(c.live))
		id := c.live[k]
		c.live = append(c.live[:k], c.live[k+1:]...)
		delete(c.secrets, id)
		return c.send(http.MethodDelete, "/api/v1/instances/"+id, nil, i)
	case r == 2:
		id := c.live[c.rng.IntN(len(c.live))]
		path, body = "/api/v1/instances/"+id+"/upgrade", map[string]string{"version": c.versions[c.rng.IntN(len(c.versions))]}
	case r == 3 || r == 4:
		// Secrets: put one of four names, or delete one that is set.
		id := c.live[c.rng.IntN(len(c.live))]
		name := fmt.Sprintf("SOAK_KEY_%d", c.rng.IntN(4))
		method, body = http.MethodPut, map[string]string{"value": fmt.Sprintf("%s-value-%d", c.name, i)}
		if set := c.secrets[id]; r == 4 && len(set) > 0 {
			names := slices.Sorted(maps.Keys(set))
			name, method, body = names[c.rng.IntN(len(names))], http.MethodDelete, nil
		}
		path = "/api/v1/instances/" + id + "/secrets/" + name
		opID, ok := c.send(method, path, body, i)
		if ok {
			if c.secrets[id] == nil {
				c.secrets[id] = map[string]bool{}
			}
			if method == http.MethodPut {
				c.secrets[id][name] = true
			} else {
				delete(c.secrets[id], name)
			}
		}
		return opID, ok
	default:
		id := c.live[c.rng.IntN(len(c.live))]
		path = "/api/v1/instances/" + id + "/" + []string{"start", "stop", "restart"}[c.rng.IntN(3)]
	}
	return c.send(method, path, body, i)
}

func (c *soakClient) send(method, path string, body any, i int) (string, bool) {
	t := c.t
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	for attempt := 0; ; attempt++ {
		base := c.apis[c.rng.IntN(len(c.apis))]
		req, err := http.NewRequest(method, base+path, bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("%s-%d", c.name, i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("soak: %s %s: %v", method, path, err)
			return "", false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			var op Operation
			if err := json.Unmarshal(b, &op); err != nil {
				t.Errorf("soak: %s", b)
				return "", false
			}
			if method == http.MethodPost && path == "/api/v1/instances" {
				c.live = append(c.live, op.InstanceID)
			}
			return op.ID, true
		case http.StatusTooManyRequests:
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(wait, 1)) * time.Second)
			continue
		case http.StatusConflict, http.StatusForbidden:
			return "", false // a delete under way, the quota: the API's documented refusals
		default:
			t.Errorf("soak: %s %s: %d %s", method, path, resp.StatusCode, b)
			return "", false
		}
	}
}

// startAPIProcess runs `mocd api` on a free port and answers its base URL
// once it is ready; env entries (KEY=value) override the System's settings.
func startAPIProcess(t *testing.T, sys *System, bin string, env ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	startProcess(t, sys, bin, "api", append([]string{
		"MOC_LISTEN=" + addr,
		"MOC_INSECURE_HTTP=true",
		"MOC_RATELIMIT_TIMEOUT=5s",
	}, env...)...)
	base := "http://" + addr
	testenv.Eventually(t, "mocd api to be ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

// soakWorker runs `mocd worker` with a short machine lease, so that a
// lease abandoned by a killed worker holds the next attempt 3s at most,
// and a short upgrade bound.
func soakWorker(t *testing.T, sys *System, bin string) *workerProcess {
	t.Helper()
	return startWorkerProcess(t, sys, bin, "MOC_FLY_LEASE_TTL=3s", "MOC_UPGRADE_TIMEOUT="+soakUpgradeTimeout.String())
}

// soakUpgradeTimeout bounds each upgrade's wait for health: flysim's checks
// pass one FlysimDelay after a start, so a healthy version is well inside
// it, and a rollback costs the soak seconds, not minutes.
const soakUpgradeTimeout = 1500 * time.Millisecond
