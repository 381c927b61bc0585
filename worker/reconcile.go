package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/store"
)

// errChanged aborts a repair whose instance moved on meanwhile.
var errChanged = errors.New("instance changed meanwhile")

// reconcile compares every settled instance (running or stopped, no
// operation under way) with its machine and repairs drift: a machine
// stopped, started or destroyed behind mocd's back. Instances that an
// operation is handling are left to it. It then sweeps orphans: machines
// in a settled instance's app that are not its machine, and moc- apps of
// no live instance (orphans.go).
func (w *Worker) reconcile(ctx context.Context) error {
	var errs []error
	after := ""
	for {
		list, err := store.SettledInstances(ctx, w.st.DB, after, 100)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		for _, inst := range list {
			if err := w.reconcileOne(ctx, inst); err != nil {
				errs = append(errs, fmt.Errorf("reconcile %s: %w", inst.ID, err))
			}
			if err := w.sweepOrphanMachines(ctx, inst); err != nil {
				errs = append(errs, fmt.Errorf("sweep orphans of %s: %w", inst.ID, err))
			}
			after = inst.ID
		}
		if len(list) < 100 {
			break
		}
	}
	if err := w.sweepOrphanApps(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (w *Worker) reconcileOne(ctx context.Context, inst store.Instance) error {
	app := AppName(inst.ID)
	m, err := w.fly.GetMachine(ctx, app, deref(inst.FlyMachineID))
	if appUnseen(err) {
		// An app still propagating to this process's API node answers 404
		// (or 401) too: "gone" only once the app answers, or stays unknown.
		visible, verr := w.appVisible(ctx, app)
		if verr != nil {
			return verr
		}
		if visible {
			m, err = w.fly.GetMachine(ctx, app, deref(inst.FlyMachineID))
		}
	}
	observed := ""
	switch {
	case fly.IsNotFound(err):
		observed = store.StatusFailed
	case err != nil:
		return err
	case m.State == fly.StateStarted:
		observed = store.StatusRunning
	case m.State == fly.StateStopped || m.State == fly.StateSuspended || m.State == fly.StateCreated:
		observed = store.StatusStopped
	case m.State == fly.StateDestroyed || m.State == fly.StateFailed:
		observed = store.StatusFailed
	default:
		return nil // between states: look again next time
	}
	if observed == inst.Status {
		return nil
	}
	w.metrics.drift(observed, false)
	var deliveries []string
	err = w.st.WithTx(ctx, func(tx *sqlx.Tx) error {
		now, err := store.LockInstance(ctx, tx, inst.AccountID, inst.ID)
		if err != nil {
			return err
		}
		busy, err := store.HasUnfinishedOperation(ctx, tx, inst.ID)
		if err != nil {
			return err
		}
		if busy || now.Status != inst.Status || !now.UpdatedAt.Equal(inst.UpdatedAt) {
			return errChanged
		}
		_, deliveries, err = w.changeStatus(ctx, tx, now, observed, "")
		return err
	})
	if errors.Is(err, errChanged) {
		return nil
	}
	if err != nil {
		return err
	}
	w.metrics.drift(observed, true)
	w.log.InfoContext(ctx, "reconciler: repaired drift", slog.String("instance_id", inst.ID),
		slog.String("from", inst.Status), slog.String("to", observed))
	w.enqueueDeliveries(ctx, deliveries)
	return nil
}
