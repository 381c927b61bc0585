package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/store"
)

// appPrefix starts every app mocd creates (AppName).
const appPrefix = "moc-"

// countSwept counts one orphan destroyed: the metric
// mocd_reconciler_orphans_swept_total, and Options.OnOrphanSwept.
func (w *Worker) countSwept(kind string) {
	w.metrics.orphanSwept(kind)
	if w.opts.OnOrphanSwept != nil {
		w.opts.OnOrphanSwept(kind)
	}
}

// sweepOrphanApps destroys the moc- apps of FlyOrg that belong to no live
// instance: left by a crash between an app's create and the instance's
// delete, or by a delete interrupted after the instance row went. An app
// is destroyed only when two sweeps in a row found it orphaned, so an
// app is never judged on one read. Apps without the moc- prefix are never
// touched; FLY_ORG must not be shared with another mocd deployment, whose
// apps would look orphaned from here.
func (w *Worker) sweepOrphanApps(ctx context.Context) error {
	apps, err := w.fly.ListApps(ctx, w.opts.FlyOrg)
	if err != nil {
		return fmt.Errorf("list apps of %s: %w", w.opts.FlyOrg, err)
	}
	// Read the instances after the apps: an instance created in between
	// is then seen, and its app (if already made) is not judged.
	ids, err := store.LiveInstanceIDs(ctx, w.st.DB)
	if err != nil {
		return err
	}
	owned := make(map[string]bool, len(ids))
	for _, id := range ids {
		owned[AppName(id)] = true
	}
	w.mu.Lock()
	prev := w.orphanApps
	w.mu.Unlock()
	next := map[string]bool{}
	var errs []error
	for _, a := range apps {
		if !strings.HasPrefix(a.Name, appPrefix) || owned[a.Name] {
			continue
		}
		if !prev[a.Name] {
			next[a.Name] = true // judged on the next sweep
			continue
		}
		if err := w.fly.DeleteApp(ctx, a.Name); err != nil && !fly.IsNotFound(err) {
			next[a.Name] = true
			errs = append(errs, fmt.Errorf("delete orphan app %s: %w", a.Name, err))
			continue
		}
		w.log.WarnContext(ctx, "reconciler: destroyed an orphan app", slog.String("app", a.Name))
		w.countSwept("app")
	}
	w.mu.Lock()
	w.orphanApps = next
	w.mu.Unlock()
	return errors.Join(errs...)
}

// sweepOrphanMachines destroys the machines of a settled instance's app
// other than the instance's own: made by a create whose record was lost;
// then the volumes of the app that nothing mounts other than the one the
// instance records: made by a volume create whose answer was lost and
// that the client sent again (the retry's volume is the one recorded). An
// instance that records no volume (created before volumes) has its
// volumes left alone: which one is its own cannot be told.
//
// It looks first without the instance's lock, and in the usual case finds
// nothing to sweep: no operation of the instance then waits behind the
// sweep's Fly calls. If it finds something, it takes the lock, as an
// operation would, reads the instance again (an operation may have given
// it another machine since the reconciler listed it) and looks again
// under the lock before it destroys anything; an instance that is busy is
// left for the next sweep.
func (w *Worker) sweepOrphanMachines(ctx context.Context, inst store.Instance) error {
	if inst.FlyMachineID == nil {
		return nil
	}
	app := AppName(inst.ID)
	machines, vols, err := w.orphansOf(ctx, app, inst)
	if err != nil || len(machines)+len(vols) == 0 {
		return err
	}
	lock, ok, err := w.st.TryLockInstance(ctx, inst.ID)
	if err != nil || !ok {
		return err
	}
	defer lock.Release()
	busy, err := store.HasUnfinishedOperation(ctx, w.st.DB, inst.ID)
	if err != nil || busy {
		return err
	}
	if inst, err = store.InstanceByID(ctx, w.st.DB, inst.ID); err != nil {
		return err
	}
	if inst.FlyMachineID == nil || inst.DeletedAt != nil {
		return nil
	}
	if machines, vols, err = w.orphansOf(ctx, app, inst); err != nil {
		return err
	}
	var errs []error
	for _, m := range machines {
		if err := w.destroyMachine(ctx, app, m); err != nil {
			errs = append(errs, err)
			continue
		}
		w.log.WarnContext(ctx, "reconciler: destroyed an orphan machine", slog.String("instance_id", inst.ID),
			slog.String("app", app), slog.String("machine_id", m))
		w.countSwept("machine")
	}
	for _, v := range vols {
		if err := w.fly.DeleteVolume(ctx, app, v); err != nil && !fly.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("destroy orphan volume %s: %w", v, err))
			continue
		}
		w.log.WarnContext(ctx, "reconciler: destroyed an orphan volume", slog.String("instance_id", inst.ID),
			slog.String("app", app), slog.String("volume_id", v))
		w.countSwept("volume")
	}
	return errors.Join(errs...)
}

// orphansOf lists the machines and volumes of the instance's app that are
// not the instance's own (sweepOrphanMachines). A missing app has none:
// the drift check reports it.
func (w *Worker) orphansOf(ctx context.Context, app string, inst store.Instance) (machines, vols []string, err error) {
	list, err := w.fly.ListMachines(ctx, app)
	if fly.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list machines of %s: %w", app, err)
	}
	for _, m := range list {
		if m.ID != *inst.FlyMachineID && m.State != fly.StateDestroyed && m.State != fly.StateDestroying {
			machines = append(machines, m.ID)
		}
	}
	if inst.FlyVolumeID == nil {
		return machines, nil, nil
	}
	vs, err := w.fly.ListVolumes(ctx, app)
	if err != nil {
		return nil, nil, fmt.Errorf("list volumes of %s: %w", app, err)
	}
	for _, v := range vs {
		if v.ID != *inst.FlyVolumeID && v.AttachedMachineID == nil { // not its own, nor mounted (freed when its machine goes)
			vols = append(vols, v.ID)
		}
	}
	return machines, vols, nil
}
