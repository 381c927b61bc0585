package worker

import (
	"context"
	"testing"

	"github.com/myopenclaw/mocd/fly"
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
	w, sim := newTestWorker(t, st, "sweep")
	listed := createdInstance(t, w, acct.ID) // as the reconciler listed it
	instID := listed.ID
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
