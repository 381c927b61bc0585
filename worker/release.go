package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/store"
)

// What every instance's machine carries besides its image.
const (
	// StatePath is where OpenClaw keeps its state (configuration, memory,
	// skills, sessions): ~/.openclaw of the image's node user. The
	// instance's volume is mounted there, so the state outlives restarts,
	// upgrades and the machine itself.
	StatePath = "/home/node/.openclaw"
	// VolumeName names the instance's data volume in its Fly app (Fly's
	// rule: lowercase letters, digits and underscores).
	VolumeName = "openclaw_data"
	// GatewayPort is the port the OpenClaw gateway listens on; the health
	// check connects to it.
	GatewayPort = 18789
	// HealthCheckName names that check in config.checks.
	HealthCheckName = "gateway"
)

// Defaults of the upgrade settings in Options.
const (
	// DefaultUpgradeTimeout bounds how long a new version has to start and
	// pass its health checks before it is rolled back; flyctl waits as
	// long for a machine's checks after an update (watch.MachinesChecks).
	DefaultUpgradeTimeout = 5 * time.Minute
	// DefaultHealthPoll spaces the reads of a machine's checks while
	// waiting for them to pass (flyctl polls every second).
	DefaultHealthPoll = 500 * time.Millisecond
	// leaseTTL is the life of the Fly lease an upgrade or configure holds;
	// it is extended every third of it while the work goes on, so that a
	// lease left by a killed worker lapses within this long.
	leaseTTL = 30 * time.Second
)

// releaseFly is the part of the Machines API that upgrades, secrets and
// volumes need, on top of Fly.
type releaseFly interface {
	UpdateMachine(ctx context.Context, app, id string, in fly.UpdateInput, opts ...fly.CallOption) (*fly.Machine, error)
	CreateVolume(ctx context.Context, app string, in fly.VolumeInput) (*fly.Volume, error)
	ListVolumes(ctx context.Context, app string) ([]fly.Volume, error)
	DeleteVolume(ctx context.Context, app, id string) error
	ExtendLease(ctx context.Context, app, id, nonce string, ttl time.Duration) (*fly.Lease, error)
}

// imageOf is the image an instance runs: recorded with its version, or the
// configured image for instances created without a version catalog.
func (w *Worker) imageOf(inst store.Instance) string {
	if inst.Image != "" {
		return inst.Image
	}
	return w.opts.Image
}

// machineConfig is the config an instance's machine runs: base (its current
// config, so that settings mocd does not manage are kept) with the image,
// the instance's secrets as its environment, its label, its volume mounted
// at StatePath and the gateway health check.
func (w *Worker) machineConfig(base fly.MachineConfig, inst store.Instance, image string, env map[string]string) fly.MachineConfig {
	cfg := base
	cfg.Image = image
	cfg.Env = env
	cfg.Metadata = maps.Clone(base.Metadata)
	if cfg.Metadata == nil {
		cfg.Metadata = map[string]string{}
	}
	cfg.Metadata[MetadataInstanceID] = inst.ID
	cfg.Mounts = nil
	if inst.FlyVolumeID != nil {
		cfg.Mounts = []fly.Mount{{Volume: *inst.FlyVolumeID, Path: StatePath}}
	}
	// TCP, not HTTP: the gateway's HTTP answers depend on its auth
	// settings, which are the customer's; an open port is the one signal
	// every healthy gateway gives.
	cfg.Checks = map[string]fly.Check{HealthCheckName: {
		Type: "tcp", Port: GatewayPort, Interval: "15s", Timeout: "2s", GracePeriod: "10s",
	}}
	return cfg
}

// secretEnv opens the instance's secrets into the machine's environment.
// Values live only in this map and in the request to Fly: never logged.
func (w *Worker) secretEnv(ctx context.Context, instanceID string) (map[string]string, error) {
	rows, err := store.ListSecrets(ctx, w.st.DB, instanceID)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	box := w.opts.SecretBox
	if box == nil {
		box = w.opts.Webhooks.SecretBox
	}
	if box == nil {
		return nil, &opFailure{Code: "secrets_unavailable", Message: "the worker has no MOC_SECRET_KEY to open the instance's secrets with"}
	}
	env := make(map[string]string, len(rows))
	for _, r := range rows {
		v, err := box.Open(r.Sealed)
		if err != nil {
			return nil, &opFailure{Code: "secrets_unavailable",
				Message: fmt.Sprintf("secret %s cannot be opened with this server's MOC_SECRET_KEY; set it again", r.Name)}
		}
		env[r.Name] = v
	}
	return env, nil
}

// ensureVolume makes sure the instance has its one data volume, in its
// region, sized by its plan, and records it. It looks before it creates, so
// a create resumed after a crash finds the volume it made; a second volume
// left by a retried call is destroyed while nothing mounts it.
func (w *Worker) ensureVolume(ctx context.Context, inst *store.Instance) error {
	app := AppName(inst.ID)
	list, err := w.fly.ListVolumes(ctx, app)
	if err != nil {
		return fmt.Errorf("list volumes of %s: %w", app, err)
	}
	var mine []fly.Volume
	for _, v := range list {
		if v.Name == VolumeName {
			mine = append(mine, v)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].CreatedAt < mine[j].CreatedAt })
	keep := ""
	for _, v := range mine {
		if inst.FlyVolumeID != nil && v.ID == *inst.FlyVolumeID {
			keep = v.ID
		}
	}
	if keep == "" && len(mine) > 0 {
		keep = mine[0].ID
	}
	if keep == "" {
		size := max(inst.VolumeGB, 1)
		v, err := w.fly.CreateVolume(ctx, app, fly.VolumeInput{Name: VolumeName, Region: inst.FlyRegion, SizeGB: size})
		if err != nil {
			return fmt.Errorf("create volume in %s: %w", app, err)
		}
		keep = v.ID
	}
	if deref(inst.FlyVolumeID) != keep {
		if err := store.SetInstanceVolume(ctx, w.st.DB, inst.ID, keep); err != nil {
			return err
		}
		inst.FlyVolumeID = &keep
	}
	for _, v := range mine {
		if v.ID != keep && v.AttachedMachineID == nil {
			w.log.WarnContext(ctx, "destroying a second volume of one instance", "instance_id", inst.ID, "volume_id", v.ID)
			if err := w.fly.DeleteVolume(ctx, app, v.ID); err != nil && !fly.IsNotFound(err) {
				return fmt.Errorf("destroy extra volume %s: %w", v.ID, err)
			}
		}
	}
	return nil
}

// destroyVolumes destroys the app's volumes once its machines are gone:
// an instance's data goes with its delete.
func (w *Worker) destroyVolumes(ctx context.Context, app string) error {
	list, err := w.fly.ListVolumes(ctx, app)
	if fly.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list volumes of %s: %w", app, err)
	}
	for _, v := range list {
		if err := w.fly.DeleteVolume(ctx, app, v.ID); err != nil && !fly.IsNotFound(err) {
			return fmt.Errorf("destroy volume %s: %w", v.ID, err)
		}
	}
	return nil
}

// carryOutRelease runs an upgrade or a configure: like carryOut, it
// answers the instance's final status and the operation's error, or a
// transient err to retry.
func (w *Worker) carryOutRelease(ctx context.Context, op store.Operation, inst store.Instance) (string, *store.OperationError, error) {
	var (
		final string
		opErr *store.OperationError
		err   error
	)
	if op.Type == store.OpUpgrade {
		final, opErr, err = w.upgrade(ctx, op, inst)
	} else {
		final, err = w.configure(ctx, op, inst)
	}
	if err == nil {
		return final, opErr, nil
	}
	if pe := permanent(err); pe != nil {
		return w.honestStatus(ctx, inst), pe, nil
	}
	return "", nil, err
}

// upgrade moves the instance's machine to the operation's version: under a
// lease, it updates the machine's image and waits for it to start and pass
// its health checks within UpgradeTimeout. If it does not, it puts the
// previous image back, waits for that to be healthy and fails the
// operation with upgrade_rolled_back and the reason. Every step looks at
// the machine first, so a worker that resumes a killed one's operation
// carries on from where the machine is: a rollback once begun is finished,
// never turned back into the upgrade.
func (w *Worker) upgrade(ctx context.Context, op store.Operation, inst store.Instance) (string, *store.OperationError, error) {
	if op.Version == nil || op.Image == nil {
		return "", nil, &opFailure{Code: "invalid_operation", Message: "the upgrade names no version"}
	}
	target, targetImage := *op.Version, *op.Image
	oldVersion, oldImage := inst.Version, w.imageOf(inst)
	if inst.Version == target && oldImage == targetImage && op.RollbackReason == nil {
		return w.honestStatus(ctx, inst), nil, nil // already there: nothing to touch
	}
	m, err := w.findMachine(ctx, inst)
	if err != nil {
		return "", nil, err
	}
	if m == nil {
		return "", nil, errNoMachine
	}
	from, err := store.SetOperationFromState(ctx, w.st.DB, op.ID, runState(m.State))
	if err != nil {
		return "", nil, err
	}
	app := AppName(inst.ID)
	bound := w.opts.UpgradeTimeout

	var final string
	var opErr *store.OperationError
	err = w.holdLease(ctx, op, app, m.ID, func(nonce string) error {
		rollback := op.RollbackReason
		if rollback == nil {
			w.log.InfoContext(ctx, "upgrading instance", slog.String("instance_id", inst.ID), slog.String("operation_id", op.ID),
				slog.String("from_version", oldVersion), slog.String("to_version", target))
			reason, err := w.runImage(ctx, inst, app, m.ID, nonce, targetImage, bound)
			if err != nil {
				return err
			}
			if reason == "" {
				if final, err = w.restoreRunState(ctx, app, m.ID, nonce, from); err != nil {
					return err
				}
				return store.SetInstanceVersion(ctx, w.st.DB, inst.ID, target, targetImage)
			}
			was := oldVersion
			if was == "" {
				was = "the previous image"
			}
			msg := fmt.Sprintf("version %s did not come up healthy within %s (%s); rolled back to %s", target, bound, reason, was)
			r, err := store.SetOperationRollback(ctx, w.st.DB, op.ID, msg)
			if err != nil {
				return err
			}
			rollback = &r
		}
		w.log.WarnContext(ctx, "rolling back an upgrade", slog.String("instance_id", inst.ID), slog.String("operation_id", op.ID),
			slog.String("reason", *rollback))
		reason, err := w.runImage(ctx, inst, app, m.ID, nonce, oldImage, bound)
		if err != nil {
			return err
		}
		if reason != "" {
			return &opFailure{Code: "rollback_failed",
				Message: *rollback + "; but the previous version did not come up healthy either (" + reason + ")"}
		}
		if final, err = w.restoreRunState(ctx, app, m.ID, nonce, from); err != nil {
			return err
		}
		opErr = &store.OperationError{Code: "upgrade_rolled_back", Message: *rollback}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return final, opErr, nil
}

// runState classes a machine state as the one an operation returns the
// machine to: started, or stopped for anything that does not run.
func runState(st string) string {
	switch st {
	case fly.StateStarted, fly.StateStarting, fly.StateRestarting, "updating":
		return fly.StateStarted
	}
	return fly.StateStopped
}

// runImage makes the machine run image and waits, within bound, for it to
// be started and healthy. It answers why it is not ("" when it is); a
// machine already on image is only waited for, so a resumed operation
// never updates twice.
func (w *Worker) runImage(ctx context.Context, inst store.Instance, app, id, nonce, image string, bound time.Duration) (string, error) {
	cur, err := w.settled(ctx, app, id)
	if err != nil {
		return "", err
	}
	if cur.Config.Image != image {
		env, err := w.secretEnv(ctx, inst.ID)
		if err != nil {
			return "", err
		}
		cfg := w.machineConfig(cur.Config, inst, image, env)
		if _, err := w.fly.UpdateMachine(ctx, app, id, fly.UpdateInput{Config: cfg}, fly.WithLease(nonce)); err != nil {
			return "", fmt.Errorf("update machine %s to %s: %w", id, image, err)
		}
	} else if runState(cur.State) != fly.StateStarted {
		if _, err := w.fly.StartMachine(ctx, app, id, fly.WithLease(nonce)); err != nil {
			return "", fmt.Errorf("start machine %s: %w", id, err)
		}
	}
	return w.waitHealthy(ctx, app, id, bound)
}

// restoreRunState stops the machine again when the operation found it
// stopped (an upgrade starts it to check its health), and answers the
// instance's final status.
func (w *Worker) restoreRunState(ctx context.Context, app, id, nonce, from string) (string, error) {
	if from != fly.StateStopped {
		return store.StatusRunning, nil
	}
	if err := w.fly.StopMachine(ctx, app, id, fly.WithLease(nonce)); err != nil {
		return "", fmt.Errorf("stop machine %s: %w", id, err)
	}
	if err := w.waitState(ctx, app, id, fly.StateStopped); err != nil {
		return "", err
	}
	return store.StatusStopped, nil
}

// settled reads the machine once it is in a state that accepts writes:
// started, stopped or the like, never half-way between two.
func (w *Worker) settled(ctx context.Context, app, id string) (*fly.Machine, error) {
	for {
		m, err := w.fly.GetMachine(ctx, app, id)
		if fly.IsNotFound(err) {
			return nil, errMachineGone
		}
		if err != nil {
			return nil, fmt.Errorf("read machine %s: %w", id, err)
		}
		var next string
		switch m.State {
		case fly.StateDestroyed, fly.StateDestroying:
			return nil, errMachineGone
		case fly.StateStarting, fly.StateRestarting, "updating":
			next = fly.StateStarted
		case fly.StateStopping:
			next = fly.StateStopped
		default:
			return m, nil
		}
		if err := w.waitState(ctx, app, id, next); err != nil {
			return nil, err
		}
	}
}

// waitState holds until the machine is in state, one wait call at a time,
// naming the machine's current version (Fly's docs require it when waiting
// for stopped; an update gives the machine a new one).
func (w *Worker) waitState(ctx context.Context, app, id, state string) error {
	for {
		m, err := w.fly.GetMachine(ctx, app, id)
		if fly.IsNotFound(err) {
			return errMachineGone
		}
		if err != nil {
			return fmt.Errorf("read machine %s: %w", id, err)
		}
		if m.State == state {
			return nil
		}
		if m.State == fly.StateDestroyed || m.State == fly.StateDestroying {
			return errMachineGone
		}
		err = w.fly.WaitMachine(ctx, app, id, state, m.VersionID(), waitTimeout)
		if err == nil {
			return nil
		}
		if fly.IsNotFound(err) {
			return errMachineGone
		}
		if fly.StatusCode(err) != http.StatusRequestTimeout {
			return fmt.Errorf("wait for machine %s to be %s: %w", id, state, err)
		}
	}
}

// waitHealthy polls the machine until it is started with every health
// check passing (as flyctl's watch.MachinesChecks does) or bound passes,
// and answers what was wrong at the end ("" when healthy). A machine that
// stopped or failed is not waited for any longer.
func (w *Worker) waitHealthy(ctx context.Context, app, id string, bound time.Duration) (string, error) {
	deadline := time.Now().Add(bound)
	for {
		m, err := w.fly.GetMachine(ctx, app, id)
		if fly.IsNotFound(err) {
			return "", errMachineGone
		}
		if err != nil {
			return "", fmt.Errorf("read machine %s: %w", id, err)
		}
		ok, failing := m.Healthy()
		if ok {
			return "", nil
		}
		switch m.State {
		case fly.StateDestroyed, fly.StateDestroying:
			return "", errMachineGone
		case fly.StateStopped, fly.StateFailed, fly.StateSuspended:
			return "the machine is " + m.State, nil
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			if m.State != fly.StateStarted {
				return "the machine is still " + m.State, nil
			}
			var parts []string
			for _, c := range failing {
				parts = append(parts, fmt.Sprintf("health check %s is %s: %s", c.Name, c.Status, c.Output))
			}
			return strings.Join(parts, "; "), nil
		}
		if m.State != fly.StateStarted {
			err := w.fly.WaitMachine(ctx, app, id, fly.StateStarted, m.VersionID(), min(remaining, waitTimeout))
			if err != nil && fly.StatusCode(err) != http.StatusRequestTimeout {
				return "", fmt.Errorf("wait for machine %s to start: %w", id, err)
			}
			continue
		}
		t := time.NewTimer(min(w.opts.HealthPoll, remaining))
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// configure puts the instance's secrets into its machine's environment: a
// running machine restarts on its new environment, a stopped one stays
// stopped and gets it at its next start. Nothing is written when the
// machine already has exactly those variables.
func (w *Worker) configure(ctx context.Context, op store.Operation, inst store.Instance) (string, error) {
	m, err := w.findMachine(ctx, inst)
	if err != nil {
		return "", err
	}
	if m == nil {
		return "", errNoMachine
	}
	env, err := w.secretEnv(ctx, inst.ID)
	if err != nil {
		return "", err
	}
	app := AppName(inst.ID)
	final := store.StatusStopped
	err = w.holdLease(ctx, op, app, m.ID, func(nonce string) error {
		cur, err := w.settled(ctx, app, m.ID)
		if err != nil {
			return err
		}
		running := runState(cur.State) == fly.StateStarted
		if running {
			final = store.StatusRunning
		}
		if maps.Equal(cur.Config.Env, env) {
			return nil
		}
		cfg := w.machineConfig(cur.Config, inst, cur.Config.Image, env)
		if _, err := w.fly.UpdateMachine(ctx, app, m.ID, fly.UpdateInput{Config: cfg, SkipLaunch: !running}, fly.WithLease(nonce)); err != nil {
			return fmt.Errorf("update machine %s: %w", m.ID, err)
		}
		want := fly.StateStopped
		if running {
			want = fly.StateStarted
		}
		return w.waitState(ctx, app, m.ID, want)
	})
	return final, err
}

// holdLease runs fn holding a Fly lease on the machine, as flyctl does for
// every machine update. Unlike withLease (one change), it holds the lease
// for a whole upgrade or configure, which outlasts a lease's TTL. The nonce is recorded with the operation, so that
// a worker resuming a killed one's operation extends the same lease rather
// than waiting for it to lapse; while fn runs the lease is extended every
// third of its life.
func (w *Worker) holdLease(ctx context.Context, op store.Operation, app, id string, fn func(nonce string) error) error {
	nonce := ""
	if op.LeaseNonce != nil {
		if l, err := w.fly.ExtendLease(ctx, app, id, *op.LeaseNonce, leaseTTL); err == nil {
			nonce = l.Nonce
		}
	}
	if nonce == "" {
		l, err := w.fly.AcquireLease(ctx, app, id, leaseTTL)
		if fly.IsNotFound(err) {
			return errMachineGone
		}
		if err != nil {
			return fmt.Errorf("lease machine %s: %w", id, err)
		}
		nonce = l.Nonce
		if err := store.SetOperationLease(ctx, w.st.DB, op.ID, nonce); err != nil {
			_ = w.fly.ReleaseLease(context.WithoutCancel(ctx), app, id, nonce)
			return err
		}
	}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if _, err := w.fly.ExtendLease(hctx, app, id, nonce, leaseTTL); err != nil && hctx.Err() == nil {
					w.log.WarnContext(ctx, "extend machine lease", slog.String("machine_id", id), slog.Any("error", err))
				}
			}
		}
	}()
	err := fn(nonce)
	stop()
	<-done

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := w.fly.ReleaseLease(rctx, app, id, nonce); rerr != nil && !fly.IsNotFound(rerr) {
		// It lapses by itself within leaseTTL.
		w.log.WarnContext(ctx, "release machine lease", slog.String("machine_id", id), slog.Any("error", rerr))
	}
	if cerr := store.SetOperationLease(rctx, w.st.DB, op.ID, ""); cerr != nil && !errors.Is(cerr, store.ErrNotFound) {
		w.log.WarnContext(ctx, "forget machine lease", slog.String("operation_id", op.ID), slog.Any("error", cerr))
	}
	return err
}
