package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
	"github.com/myopenclaw/mocd/worker"
)

// The five ways mocd broke on the real Machines API (issue 14), each shown
// handled by the worker against a flysim that is as strict as Fly.

// createOne accepts a create and answers its finished operation.
func createOne(t *testing.T, sys *System, token, subdomain string) Operation {
	t.Helper()
	op := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": subdomain})
	return sys.WaitOperation(t, token, op.ID)
}

// 1. A new app is not visible at once. Here the create's answer is lost
// (applied, then the connection reset), so the worker gets neither the
// app nor its affinity cookie, and the app takes 1.5s to propagate: the
// retried create meets name_taken, and the worker must wait for the app
// before it lists or creates machines in it.
func TestWorkerWaitsForANewApp(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps", Applied: true, Reset: true, PropagationMS: 1500})
	done := createOne(t, sys, token, "late-app")
	if done.Status != "succeeded" {
		t.Fatalf("create: %+v (error %+v)", done, done.Error)
	}
	assertOneMachine(t, sys, done.InstanceID, "started")
	if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps"); n != 2 {
		t.Errorf("%d app creates, want the lost one and its retry", n)
	}
	if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines"); n != 1 {
		t.Errorf("%d machine creates, want 1", n)
	}
}

// 1b. An app still propagating may answer 401 rather than 404 (flaps'
// WaitForApp retries both), and only its creator holds the affinity
// cookie. A worker process that did not create the app (here: the worker
// restarted, as after a kill, so its cookie jar is empty) must take a 401
// from a machine call on such an app as "not visible yet" and wait, not
// fail the operation fly_rejected (seen in the soak).
func TestWorkerWaitsForAnAppThatAnswers401(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: "/v1/apps", PropagationMS: 4000, Unauthorized: true})
	created := createOne(t, sys, token, "unseen-app")
	if created.Status != "succeeded" {
		t.Fatalf("create: %+v (error %+v)", created, created.Error)
	}
	sys.StopWorker()
	sys.StartWorker()
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+created.InstanceID+"/stop", token, nil)
	if d := sys.WaitOperation(t, token, stop.ID); d.Status != "succeeded" {
		t.Fatalf("stop by a worker without the app's cookie: %+v (error %+v)", d, d.Error)
	}
	assertOneMachine(t, sys, created.InstanceID, "stopped")
}

// 2. Waiting for stopped: Fly's docs require instance_id; flysim refuses a
// wait for stopped without it (400), which failed every stop.
func TestWorkerStopWaitsWithInstanceID(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{FlysimDelay: 20 * time.Millisecond})
	_, token := sys.NewAccount(t, "pro")
	created := createOne(t, sys, token, "stop-me")
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+created.InstanceID+"/stop", token, nil)
	if d := sys.WaitOperation(t, token, stop.ID); d.Status != "succeeded" {
		t.Fatalf("stop: %+v (error %+v)", d, d.Error)
	}
	assertOneMachine(t, sys, created.InstanceID, "stopped")
	if got := getInstance(t, sys, token, created.InstanceID); got.Status != "stopped" {
		t.Errorf("instance %s", got.Status)
	}
}

// 3. Machine names are unique within an app. A machine create whose answer
// is lost is retried by the client and meets name_taken; the worker adopts
// the machine it made (by name and label) in the same attempt instead of
// failing, and no second machine exists.
func TestWorkerAdoptsItsMachineOnNameTaken(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	sys.Flysim.InjectFault(flysim.Fault{Method: http.MethodPost, Path: routeCreateMachine, Applied: true, Reset: true})
	done := createOne(t, sys, token, "taken-name")
	if done.Status != "succeeded" {
		t.Fatalf("create: %+v (error %+v)", done, done.Error)
	}
	assertOneMachine(t, sys, done.InstanceID, "started")
	if n := sys.Flysim.Calls(http.MethodPost, routeCreateMachine); n != 2 {
		t.Errorf("%d machine creates, want the lost one and its refused retry", n)
	}
	if op, err := store.OperationByID(context.Background(), sys.Store.DB, done.ID); err != nil || op.Attempts != 1 {
		t.Errorf("operation ran %d times (%v), want once: name_taken is recovered in the attempt", op.Attempts, err)
	}
}

// 4. Never start a machine that is still launching: Fly is already
// starting it, and flysim refuses the start with 412.
func TestWorkerNeverStartsALaunchingMachine(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{FlysimDelay: 150 * time.Millisecond})
	_, token := sys.NewAccount(t, "pro")
	done := createOne(t, sys, token, "launching")
	if done.Status != "succeeded" {
		t.Fatalf("create: %+v (error %+v)", done, done.Error)
	}
	assertOneMachine(t, sys, done.InstanceID, "started")
	if n := sys.Flysim.Calls(http.MethodPost, "/v1/apps/{app}/machines/{id}/start"); n != 0 {
		t.Errorf("%d start calls on a machine Fly was launching", n)
	}
	if op, _ := store.OperationByID(context.Background(), sys.Store.DB, done.ID); op.Attempts != 1 {
		t.Errorf("operation ran %d times", op.Attempts)
	}
}

// 5. The wire: the create-app body names the app in "name", and a macaroon
// token goes with the FlyV1 scheme even when configured as "Bearer fm2_…".
func TestWorkerSpeaksFlapsWire(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{Worker: func(o *worker.Options) {
		o.Fly = fly.New(fly.Options{BaseURL: o.Fly.(*fly.Client).BaseURL(), Token: "Bearer fm2_e2e-macaroon"})
	}})
	_, token := sys.NewAccount(t, "pro")
	done := createOne(t, sys, token, "wire")
	if done.Status != "succeeded" {
		t.Fatalf("create: %+v (error %+v)", done, done.Error)
	}
	assertOneMachine(t, sys, done.InstanceID, "started")
}

// Leases around every change: with a lease held by someone else (an
// operator's flyctl, a stuck earlier attempt), the worker does not write
// to the machine until it gets the lease itself, then makes the change
// once, with the nonce, and gives the lease back.
func TestWorkerChangesMachinesUnderALease(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	created := createOne(t, sys, token, "leased")
	m := sys.MachinesOf(created.InstanceID)[0]
	app := worker.AppName(created.InstanceID)
	other := fly.New(fly.Options{BaseURL: sys.FlysimURL, Token: "someone-else"})
	if _, err := other.AcquireLease(context.Background(), app, m.ID, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	const routeStop, routeLease = "/v1/apps/{app}/machines/{id}/stop", "/v1/apps/{app}/machines/{id}/lease"
	before := sys.Flysim.Calls(http.MethodPost, routeLease)
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+created.InstanceID+"/stop", token, nil)
	if d := sys.WaitOperation(t, token, stop.ID); d.Status != "succeeded" {
		t.Fatalf("stop: %+v (error %+v)", d, d.Error)
	}
	assertOneMachine(t, sys, created.InstanceID, "stopped")
	if n := sys.Flysim.Calls(http.MethodPost, routeStop); n != 1 {
		t.Errorf("%d stop calls, want one, made under the worker's own lease", n)
	}
	if n := sys.Flysim.Calls(http.MethodPost, routeLease) - before; n < 2 {
		t.Errorf("%d lease requests, want the refused ones and the granted one", n)
	}
	if n := sys.Flysim.Calls(http.MethodDelete, routeLease); n != 1 {
		t.Errorf("%d lease releases, want the stop's", n)
	}
	if _, err := other.GetMachine(context.Background(), app, m.ID); err != nil {
		t.Fatal(err)
	}
}

// The reconciler sweeps orphans: a moc- app that belongs to no instance is
// deleted, a machine in an instance's app that is not the instance's is
// destroyed, so is a volume there that nothing mounts and the instance
// does not record (a volume create whose answer was lost, sent again), and
// anything not named moc- is left alone; each sweep is logged and counted.
func TestReconcilerSweepsOrphans(t *testing.T) {
	t.Parallel()
	var apps, machines, volumes atomic.Int64
	sys := Start(t, Options{Worker: func(o *worker.Options) {
		o.OnOrphanSwept = func(kind string) {
			switch kind {
			case "app":
				apps.Add(1)
			case "volume":
				volumes.Add(1)
			default:
				machines.Add(1)
			}
		}
	}})
	_, token := sys.NewAccount(t, "pro")
	created := createOne(t, sys, token, "keeper")
	own := sys.MachinesOf(created.InstanceID)[0]
	before := sys.Metrics(t) // nothing to sweep yet

	ctx := context.Background()
	other := fly.New(fly.Options{BaseURL: sys.FlysimURL, Token: "operator"})
	orphanApp := worker.AppName("inst_never_recorded")
	for _, name := range []string{orphanApp, "not-mocd"} {
		if _, err := other.CreateApp(ctx, name, "personal"); err != nil {
			t.Fatal(err)
		}
		if _, err := other.CreateMachine(ctx, name, fly.MachineInput{Config: fly.MachineConfig{Image: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	stray, err := other.CreateMachine(ctx, worker.AppName(created.InstanceID), fly.MachineInput{Name: "stray", Config: fly.MachineConfig{Image: Image}})
	if err != nil {
		t.Fatal(err)
	}

	instApp := worker.AppName(created.InstanceID)
	strayVol, err := other.CreateVolume(ctx, instApp, fly.VolumeInput{Name: worker.VolumeName, Region: "iad", SizeGB: 1})
	if err != nil {
		t.Fatal(err)
	}

	testenv.Eventually(t, "the orphans to be swept", func() bool { return apps.Load() == 1 && machines.Load() == 1 && volumes.Load() == 1 })
	after := sys.Metrics(t)
	wantDelta(t, before, after, 1, "mocd_reconciler_orphans_swept_total", "kind", "app")
	wantDelta(t, before, after, 1, "mocd_reconciler_orphans_swept_total", "kind", "machine")
	wantDelta(t, before, after, 1, "mocd_reconciler_orphans_swept_total", "kind", "volume")
	vols, _ := sys.Flysim.Volumes(instApp)
	for _, v := range vols {
		switch {
		case v.ID == strayVol.ID && v.State != flysim.VolumePendingDestroy:
			t.Errorf("stray volume %s", v)
		case v.ID != strayVol.ID && (v.State != flysim.VolumeCreated || v.AttachedMachineID == nil || *v.AttachedMachineID != own.ID):
			t.Errorf("the instance's own volume %s (attached to %v) was touched", v, v.AttachedMachineID)
		}
	}
	if len(vols) != 2 {
		t.Errorf("volumes %v, want the instance's and the swept stray", vols)
	}
	held := map[string]int{}
	for _, a := range sys.Flysim.Machines() {
		held[a.App] = len(a.Machines)
	}
	if _, ok := held[orphanApp]; ok {
		t.Errorf("orphan app %s still held", orphanApp)
	}
	if held["not-mocd"] != 1 {
		t.Errorf("an app not named moc- was touched: %v", held)
	}
	if got, _ := sys.Flysim.Machine(worker.AppName(created.InstanceID), stray.ID); got.State != "destroyed" {
		t.Errorf("stray machine %s", got.State)
	}
	assertOneMachine(t, sys, created.InstanceID, "started")
	if sys.MachinesOf(created.InstanceID)[0].ID != own.ID {
		t.Error("the instance's own machine was replaced")
	}
	for _, want := range []string{"reconciler: destroyed an orphan app", "reconciler: destroyed an orphan machine", "reconciler: destroyed an orphan volume"} {
		if !strings.Contains(sys.Logs(), want) {
			t.Errorf("no %q in the logs", want)
		}
	}
}
