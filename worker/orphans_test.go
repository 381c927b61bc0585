package worker

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// TestSweepReadsTheInstanceAgainUnderItsLock: the reconciler lists
// instances, then sweeps each; an operation may give an instance another
// machine in between. The sweep must judge orphans by the machine the
// instance records when it holds the lock, not by the one it was listed
// with: it destroys a stray machine and keeps the instance's new one.
func TestSweepReadsTheInstanceAgainUnderItsLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	acct, err := store.CreateAccount(ctx, st.DB, "sweep@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	sim := flysim.New(flysim.Options{})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	w := &Worker{
		st:      st,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		fly:     fly.New(fly.Options{BaseURL: srv.URL, Token: "sweep", MaxRetries: -1}),
		opts:    Options{Image: "registry.fly.io/openclaw:sweep", FlyOrg: "personal", LeaseTTL: DefaultLeaseTTL},
		metrics: newMetrics(prometheus.NewRegistry()),
	}
	instID := id.New(id.Instance)
	inst, err := store.InsertInstance(ctx, st.DB, instID, acct.ID, strings.ToLower(instID), "iad", store.StatusCreating)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	listed, err := store.InstanceByID(ctx, st.DB, instID) // as the reconciler listed it
	if err != nil {
		t.Fatal(err)
	}
	app, first := AppName(instID), *listed.FlyMachineID

	// Meanwhile an operation replaced the machine and recorded the new one;
	// a stray machine (a create whose record was lost) sits beside it.
	replacement, err := w.fly.CreateMachine(ctx, app, fly.MachineInput{Config: fly.MachineConfig{Image: w.opts.Image}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.destroyMachine(ctx, app, first); err != nil {
		t.Fatal(err)
	}
	if err := store.SetInstanceFly(ctx, st.DB, instID, app, replacement.ID); err != nil {
		t.Fatal(err)
	}
	stray, err := w.fly.CreateMachine(ctx, app, fly.MachineInput{Config: fly.MachineConfig{Image: w.opts.Image}})
	if err != nil {
		t.Fatal(err)
	}

	if err := w.sweepOrphanMachines(ctx, listed); err != nil {
		t.Fatal(err)
	}
	if m, _ := sim.Machine(app, replacement.ID); m.State == fly.StateDestroyed || m.State == fly.StateDestroying {
		t.Errorf("the instance's recorded machine was swept as an orphan (%s)", m.State)
	}
	if m, _ := sim.Machine(app, stray.ID); m.State != fly.StateDestroyed && m.State != fly.StateDestroying {
		t.Errorf("the stray machine was left %s", m.State)
	}
}
