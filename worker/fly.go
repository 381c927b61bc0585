package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/store"
)

// Fly is the part of the Machines API the worker drives; *fly.Client
// implements it, and tests give it the same client pointed at flysim.
type Fly interface {
	GetApp(ctx context.Context, name string) (*fly.App, error)
	CreateApp(ctx context.Context, name, org string) (*fly.App, error)
	WaitForApp(ctx context.Context, name string) (*fly.App, error)
	ListApps(ctx context.Context, org string) ([]fly.App, error)
	DeleteApp(ctx context.Context, name string) error
	CreateMachine(ctx context.Context, app string, in fly.MachineInput) (*fly.Machine, error)
	ListMachines(ctx context.Context, app string) ([]fly.Machine, error)
	GetMachine(ctx context.Context, app, id string) (*fly.Machine, error)
	StartMachine(ctx context.Context, app, id string, opts ...fly.CallOption) (string, error)
	StopMachine(ctx context.Context, app, id string, opts ...fly.CallOption) error
	RestartMachine(ctx context.Context, app, id string, opts ...fly.CallOption) error
	DestroyMachine(ctx context.Context, app, id string, force bool, opts ...fly.CallOption) error
	WaitMachine(ctx context.Context, app, id, state, version string, timeout time.Duration) error
	AcquireLease(ctx context.Context, app, id string, ttl time.Duration) (*fly.Lease, error)
	ReleaseLease(ctx context.Context, app, id, nonce string) error
	// The calls of upgrades, secrets and volumes (release.go).
	releaseFly
}

// MetadataInstanceID labels each machine with the instance it serves, so
// that a create resumed after a crash finds the machine it made before.
const MetadataInstanceID = "mocd_instance_id"

// waitTimeout is how long one wait call holds; longer waits loop on 408.
const waitTimeout = 60 * time.Second

// AppName is the Fly app of an instance: derived from the instance id alone,
// so every attempt of every operation finds the same app, and valid for Fly
// (lowercase, digits and dashes; instance ids are mixed-case base62).
func AppName(instanceID string) string {
	sum := sha256.Sum256([]byte(instanceID))
	return "moc-" + hex.EncodeToString(sum[:10])
}

// opFailure is a permanent failure: the operation fails with this code and
// message, and the task is not retried.
type opFailure store.OperationError

func (e *opFailure) Error() string { return e.Code + ": " + e.Message }

var errMachineGone = &opFailure{Code: "machine_gone",
	Message: "the instance's machine was destroyed outside mocd; delete the instance and create a new one"}

var errNoMachine = &opFailure{Code: "no_machine",
	Message: "the instance has no machine (its create did not finish); delete it and create a new one"}

// carryOut drives Fly for one operation. It answers the instance's final
// status and, for a permanent failure, the operation's error; a transient
// failure comes back as err, to be retried.
func (w *Worker) carryOut(ctx context.Context, op store.Operation, inst store.Instance) (string, *store.OperationError, error) {
	var err error
	switch op.Type {
	case store.OpCreate:
		err = w.create(ctx, inst)
	case store.OpStart:
		err = w.settle(ctx, inst, fly.StateStarted, false)
	case store.OpStop:
		err = w.settle(ctx, inst, fly.StateStopped, false)
	case store.OpRestart:
		err = w.settle(ctx, inst, fly.StateStarted, true)
	case store.OpDelete:
		err = w.destroy(ctx, inst)
	case store.OpUpgrade, store.OpConfigure:
		return w.carryOutRelease(ctx, op, inst)
	default:
		err = &opFailure{Code: "unknown_operation", Message: "unknown operation type " + op.Type}
	}
	if err == nil {
		return settled[op.Type], nil, nil
	}
	if opErr := permanent(err); opErr != nil {
		return w.honestStatus(ctx, inst), opErr, nil
	}
	return "", nil, err
}

// permanent answers the operation error of a failure that retrying cannot
// cure, or nil for a transient one: a network failure, a Fly 5xx or 429, a
// lease held by someone else (409), a machine between states (412), a
// timeout (408), or anything of our own such as Postgres being away.
func permanent(err error) *store.OperationError {
	if f, ok := errors.AsType[*opFailure](err); ok {
		return (*store.OperationError)(f)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	fe, ok := errors.AsType[*fly.Error](err)
	if !ok || fly.IsRetryable(err) || fe.StatusCode >= 500 {
		return nil
	}
	switch fe.StatusCode {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusPreconditionFailed, http.StatusTooManyRequests:
		return nil
	}
	msg := fmt.Sprintf("Fly.io rejected %s %s with %d: %s", fe.Method, fe.Path, fe.StatusCode, fe.Message)
	if fe.RequestID != "" {
		msg += " (fly-request-id " + fe.RequestID + ")"
	}
	return &store.OperationError{Code: "fly_rejected", Message: msg}
}

// honestStatus is what an instance whose operation failed shows: what its
// machine is doing if that can be read, failed otherwise.
func (w *Worker) honestStatus(ctx context.Context, inst store.Instance) string {
	if fresh, err := store.InstanceByID(ctx, w.st.DB, inst.ID); err == nil {
		inst = fresh
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := w.findMachine(rctx, inst)
	if err != nil || m == nil {
		return store.StatusFailed
	}
	switch m.State {
	case fly.StateStarted:
		return store.StatusRunning
	case fly.StateStopped, fly.StateCreated, fly.StateSuspended:
		return store.StatusStopped
	}
	return store.StatusFailed
}

// create makes sure the instance has its app and exactly one machine, and
// that the machine runs. Each step looks first, so a create that crashed
// half-way resumes where it stopped.
func (w *Worker) create(ctx context.Context, inst store.Instance) error {
	app := AppName(inst.ID)
	if err := w.ensureApp(ctx, app); err != nil {
		return err
	}
	if err := store.SetInstanceFly(ctx, w.st.DB, inst.ID, app, deref(inst.FlyMachineID)); err != nil {
		return err
	}
	inst.FlyApp = &app

	m, err := w.findMachine(ctx, inst)
	if err != nil {
		return err
	}
	if m == nil {
		if err := w.ensureVolume(ctx, &inst); err != nil {
			return err
		}
		if m, err = w.createMachine(ctx, app, inst); err != nil {
			return err
		}
		if err := store.SetInstanceFly(ctx, w.st.DB, inst.ID, app, m.ID); err != nil {
			return err
		}
	}
	inst.FlyMachineID = &m.ID
	// Machines of the instance under another name (none are made so today,
	// but an older mocd named them differently) would be extras: keep the
	// recorded one, destroy the others.
	if err := w.destroyExtras(ctx, app, inst.ID, m.ID); err != nil {
		return err
	}
	return w.settle(ctx, inst, fly.StateStarted, false)
}

// ensureApp makes sure the instance's app exists and that Fly answers for
// it, whichever process created it. A new app takes a moment to be known
// to every API node, so after a create (or on finding the name taken by
// our own earlier attempt, whose answer was lost) it waits for the app as
// flyctl does after every app create (flaps.WaitForApp).
func (w *Worker) ensureApp(ctx context.Context, app string) error {
	_, err := w.fly.GetApp(ctx, app)
	if err == nil {
		return nil
	}
	if code := fly.StatusCode(err); code != http.StatusNotFound && code != http.StatusUnauthorized {
		return fmt.Errorf("read app %s: %w", app, err)
	}
	// Not there, or not visible yet: create it. Taken means it exists
	// (the name is derived from the instance id, so it is ours).
	if _, err := w.fly.CreateApp(ctx, app, w.opts.FlyOrg); err != nil && !fly.IsNameTaken(err) {
		return fmt.Errorf("create app %s: %w", app, err)
	}
	if _, err := w.fly.WaitForApp(ctx, app); err != nil {
		// Still unseen after a minute: Fly is slow, not refusing; retry the
		// step later rather than fail the operation on a 404.
		return fmt.Errorf("wait for app %s: %v", app, err)
	}
	return nil
}

// createMachine creates the instance's machine, named after its subdomain.
// Fly refuses a second live machine with a name in one app: a create whose
// answer was lost (a reset, a timeout) and that is sent again meets the
// first one's name. That machine is ours, and is adopted: found by its name
// and the mocd_instance_id label, never by name alone.
func (w *Worker) createMachine(ctx context.Context, app string, inst store.Instance) (*fly.Machine, error) {
	env, err := w.secretEnv(ctx, inst.ID)
	if err != nil {
		return nil, err
	}
	m, err := w.fly.CreateMachine(ctx, app, fly.MachineInput{
		Name:   inst.Subdomain,
		Region: inst.FlyRegion,
		// Image, secrets, label, volume and health check (release.go).
		Config: w.machineConfig(fly.MachineConfig{}, inst, w.imageOf(inst), env),
	})
	if err == nil {
		return m, nil
	}
	if code := fly.StatusCode(err); !fly.IsNameTaken(err) && code != http.StatusConflict {
		return nil, fmt.Errorf("create machine in %s: %w", app, err)
	}
	list, lerr := w.fly.ListMachines(ctx, app)
	if lerr != nil {
		return nil, fmt.Errorf("list machines of %s: %w", app, lerr)
	}
	for _, got := range list {
		if got.Name != inst.Subdomain || got.Config.Metadata[MetadataInstanceID] != inst.ID {
			continue
		}
		if got.State == fly.StateDestroying {
			// Our own machine on its way out still holds the name: the
			// step succeeds once Fly has finished destroying it.
			return nil, fmt.Errorf("machine name %q is held by machine %s, still being destroyed", inst.Subdomain, got.ID)
		}
		w.log.InfoContext(ctx, "adopted the machine an earlier create made", "instance_id", inst.ID, "machine_id", got.ID)
		return &got, nil
	}
	// Taken by a machine that is not the instance's: nothing mocd can fix.
	return nil, &opFailure{Code: "fly_rejected", Message: fmt.Sprintf(
		"Fly.io refused machine name %q in app %s and no machine of this instance holds it: %v", inst.Subdomain, app, err)}
}

// findMachine answers the instance's live machine: the recorded one, or
// else one labelled with the instance (recording it), or nil.
func (w *Worker) findMachine(ctx context.Context, inst store.Instance) (*fly.Machine, error) {
	app := AppName(inst.ID)
	if inst.FlyMachineID != nil {
		m, err := w.fly.GetMachine(ctx, app, *inst.FlyMachineID)
		if appUnseen(err) {
			// The app may not be visible to this process yet (another one
			// created it moments ago): a 404 means "gone", a 401 "refused",
			// only once the app answers.
			visible, verr := w.appVisible(ctx, app)
			if verr != nil {
				return nil, verr
			}
			if !visible {
				return nil, nil // no app, so no machine
			}
			m, err = w.fly.GetMachine(ctx, app, *inst.FlyMachineID)
		}
		switch {
		case err == nil && m.State != fly.StateDestroyed && m.State != fly.StateDestroying:
			return m, nil
		case err != nil && !fly.IsNotFound(err):
			return nil, fmt.Errorf("read machine %s: %w", *inst.FlyMachineID, err)
		}
	}
	mine, err := w.labelled(ctx, app, inst.ID)
	if err != nil || len(mine) == 0 {
		return nil, err
	}
	m := mine[0]
	if deref(inst.FlyMachineID) != m.ID {
		if err := store.SetInstanceFly(ctx, w.st.DB, inst.ID, app, m.ID); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

// appUnseen reports whether err is what an API node that a new app has not
// reached yet answers for it: 404, or 401 (flaps.WaitForApp retries both,
// and a worker process other than the app's creator holds no affinity
// cookie for it). Either means "look again once the app answers", never
// "gone" or "refused" on its own.
func appUnseen(err error) bool {
	code := fly.StatusCode(err)
	return code == http.StatusNotFound || code == http.StatusUnauthorized
}

// appVisible reports whether the app exists, waiting (flaps.WaitForApp)
// for one that is still propagating; false once Fly has answered 404 for
// as long as an app takes to appear.
func (w *Worker) appVisible(ctx context.Context, app string) (bool, error) {
	_, err := w.fly.WaitForApp(ctx, app)
	switch {
	case err == nil:
		return true, nil
	case fly.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("wait for app %s: %w", app, err)
}

// labelled lists the live machines of app labelled with the instance,
// oldest first; an app that does not exist has none.
func (w *Worker) labelled(ctx context.Context, app, instanceID string) ([]fly.Machine, error) {
	list, err := w.fly.ListMachines(ctx, app)
	if appUnseen(err) {
		if visible, verr := w.appVisible(ctx, app); verr != nil || !visible {
			return nil, verr
		}
		list, err = w.fly.ListMachines(ctx, app)
	}
	if err != nil {
		return nil, fmt.Errorf("list machines of %s: %w", app, err)
	}
	var mine []fly.Machine
	for _, m := range list {
		if m.Config.Metadata[MetadataInstanceID] == instanceID && m.State != fly.StateDestroyed && m.State != fly.StateDestroying {
			mine = append(mine, m)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].CreatedAt < mine[j].CreatedAt })
	return mine, nil
}

func (w *Worker) destroyExtras(ctx context.Context, app, instanceID, keep string) error {
	mine, err := w.labelled(ctx, app, instanceID)
	if err != nil {
		return err
	}
	for _, m := range mine {
		if m.ID == keep {
			continue
		}
		w.log.WarnContext(ctx, "destroying a second machine of one instance", "instance_id", instanceID, "machine_id", m.ID)
		if err := w.destroyMachine(ctx, app, m.ID); err != nil {
			return err
		}
	}
	return nil
}

// destroyMachine destroys one machine by force, under a lease; a machine
// already gone is fine.
func (w *Worker) destroyMachine(ctx context.Context, app, id string) error {
	err := w.withLease(ctx, app, id, func(opts ...fly.CallOption) error {
		return w.fly.DestroyMachine(ctx, app, id, true, opts...)
	})
	if err != nil && !fly.IsNotFound(err) {
		return fmt.Errorf("destroy machine %s: %w", id, err)
	}
	return nil
}

// withLease runs one change to a machine under a lease, as flyctl does
// around every machine change: the lease keeps any other client (a
// stuck earlier attempt of ours, an operator's flyctl) from changing the
// machine meanwhile, and the change carries the lease's nonce, without
// which a leased machine refuses writes. A lease held by someone else is
// 409, a transient failure: the step is tried again later, by which time
// an abandoned lease has expired (Options.LeaseTTL).
func (w *Worker) withLease(ctx context.Context, app, id string, change func(opts ...fly.CallOption) error) error {
	l, err := w.fly.AcquireLease(ctx, app, id, w.opts.LeaseTTL)
	if err != nil {
		return fmt.Errorf("lease machine %s: %w", id, err)
	}
	defer func() {
		// Released even when ctx has ended; a failure only leaves the
		// lease to expire.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := w.fly.ReleaseLease(rctx, app, id, l.Nonce); err != nil && !fly.IsNotFound(err) {
			w.log.WarnContext(ctx, "release machine lease; it will expire", "machine_id", id, "error", err)
		}
	}()
	return change(fly.WithLease(l.Nonce))
}

// settle brings the instance's machine to want (started or stopped),
// acting only when it is elsewhere: a start on a started machine makes no
// write call. restart restarts a started machine first. Between states it
// waits with Fly's wait call (a long poll), never by sleeping, naming the
// machine's version (Fly's docs require instance_id when waiting for
// stopped). It never starts a machine Fly is still launching: a created
// machine is first waited on until it settles, and only one that stays
// created (nobody launching it) is started.
func (w *Worker) settle(ctx context.Context, inst store.Instance, want string, restart bool) error {
	m, err := w.findMachine(ctx, inst)
	if err != nil {
		return err
	}
	if m == nil {
		return errNoMachine
	}
	app := AppName(inst.ID)
	idle := false // seen settled in created: no launch is under way
	for {
		var change func(opts ...fly.CallOption) error
		target := fly.StateSettled
		switch st := m.State; {
		case st == fly.StateDestroyed || st == fly.StateDestroying:
			return errMachineGone
		case restart && st == fly.StateStarted:
			change = func(opts ...fly.CallOption) error { return w.fly.RestartMachine(ctx, app, m.ID, opts...) }
			target = fly.StateStarted
		case st == want && !restart:
			return nil
		case want == fly.StateStarted && (st == fly.StateStopped || st == fly.StateSuspended || st == fly.StateFailed || (st == fly.StateCreated && idle)):
			change = func(opts ...fly.CallOption) error {
				_, err := w.fly.StartMachine(ctx, app, m.ID, opts...)
				return err
			}
			target = fly.StateStarted
		case want == fly.StateStopped && st == fly.StateStarted:
			change = func(opts ...fly.CallOption) error { return w.fly.StopMachine(ctx, app, m.ID, opts...) }
			target = fly.StateStopped
		case want == fly.StateStopped && (st == fly.StateSuspended || st == fly.StateFailed || (st == fly.StateCreated && idle)):
			return nil // nothing runs: as stopped as it gets
		}
		// Otherwise the machine is launching or between states: wait for
		// it to settle, then decide.
		if change != nil {
			if err := w.withLease(ctx, app, m.ID, change); err != nil {
				return fmt.Errorf("%s machine %s: %w", target, m.ID, err)
			}
			restart = false
		}
		err := w.fly.WaitMachine(ctx, app, m.ID, target, m.VersionID(), waitTimeout)
		if err != nil && fly.StatusCode(err) != http.StatusRequestTimeout {
			return fmt.Errorf("wait for machine %s to be %s: %w", m.ID, target, err)
		}
		if err == nil && change != nil && target == want {
			// Our own change moved the machine out of want before its
			// answer (start to starting, stop to stopping, restart to
			// restarting: FLY-MACHINES.md, States), and the wait answers
			// 200 only once it is in want again: there is nothing left to
			// decide, so no read of the machine follows (flyctl's
			// machine.Restart likewise ends with WaitForStartOrStop).
			return nil
		}
		got, err := w.fly.GetMachine(ctx, app, m.ID)
		if fly.IsNotFound(err) {
			return errMachineGone
		}
		if err != nil {
			return fmt.Errorf("read machine %s: %w", m.ID, err)
		}
		idle = target == fly.StateSettled && got.State == fly.StateCreated
		m = got
	}
}

// destroy removes the instance's machines and its app; both steps accept
// that an earlier attempt already did them.
func (w *Worker) destroy(ctx context.Context, inst store.Instance) error {
	app := AppName(inst.ID)
	mine, err := w.labelled(ctx, app, inst.ID)
	if err != nil {
		return err
	}
	for _, m := range mine {
		if err := w.destroyMachine(ctx, app, m.ID); err != nil {
			return err
		}
	}
	if err := w.destroyVolumes(ctx, app); err != nil {
		return err
	}
	if err := w.fly.DeleteApp(ctx, app); err != nil && !fly.IsNotFound(err) {
		return fmt.Errorf("delete app %s: %w", app, err)
	}
	// The instance is gone: its secrets have no reason to be kept.
	return store.DeleteInstanceSecrets(ctx, w.st.DB, inst.ID)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
