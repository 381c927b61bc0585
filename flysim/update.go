package flysim

import (
	"net/http"
)

// StateUpdating is the transient state of a machine whose config is being
// replaced (FLY-MACHINES.md, transient states).
const StateUpdating = "updating"

// updateMachine follows POST /v1/apps/{app}/machines/{id} (fly-go
// flaps.Update, body fly.LaunchMachineInput; flyctl internal/machine/update.go
// then waits for the machine to settle and for its checks to pass).
//
// Rules, each as strict as Fly:
//   - the body replaces the whole config: config.image is required, and a
//     config without guest gets the default guest, as a create does;
//   - a machine held by a lease refuses the update without the lease's
//     fly-machine-lease-nonce (409), like every other write;
//   - a destroyed machine is 404; a machine between states (starting,
//     stopping, restarting, updating, destroying) is 412, as Fly refuses
//     to update a machine that is busy;
//   - the region cannot change (a machine with a volume cannot move; the
//     Machines API places updates on the machine's own host);
//   - an update keeps the machine's volume (sameVolume); mounts follow
//     the volume rules of attachLocked; checks those of validateChecks;
//   - the machine gets a new version and instance_id (fly.Machine: "unique
//     for each version of the machine");
//   - it then runs the new config: updating → starting → started, unless
//     skip_launch, when it ends stopped (flyctl's --skip-start maps to
//     skip_launch; without it an update starts a stopped machine).
func (s *Server) updateMachine(w http.ResponseWriter, r *http.Request) {
	in, e := decodeLaunchInput(r)
	if e != nil {
		writeError(w, e)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a, m, e := s.writableInAppLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	switch m.State {
	case StateStarted, StateStopped, StateCreated, StateSuspended, StateFailed:
	default:
		writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
			"unable to update machine from current state: '%s'", m.State))
		return
	}
	if in.Region != "" && in.Region != m.Region {
		writeError(w, errorf(http.StatusBadRequest, "invalid",
			"cannot move machine %s from region %s to %s; create a new machine instead", m.ID, m.Region, in.Region))
		return
	}
	if e := sameVolume(m, in.Config.Mounts); e != nil {
		writeError(w, e)
		return
	}
	if e := s.attachLocked(a, m.ID, m.Region, in.Config.Mounts); e != nil {
		writeError(w, e)
		return
	}
	if in.Name != "" {
		m.Name = in.Name
	}
	m.Config = in.Config
	m.ImageRef = parseImageRef(in.Config.Image)
	m.newVersion()
	if in.SkipLaunch {
		s.moveLocked(m, "user", StateUpdating, StateStopped)
	} else {
		s.moveLocked(m, "user", StateUpdating, StateStarting, StateStarted)
	}
	writeJSON(w, http.StatusOK, m.snapshot())
}

// sameVolume refuses an update that would change which volume the machine
// mounts: swap it for another, remove it, or give a machine without one a
// volume. Only the mount path may change in place. Source: flyctl's deploy
// (internal/command/deploy/machines_launchinput.go), which replaces the
// machine in each of those cases because "volumes attached to existing
// machines can't be swapped by other volumes", "it is not possible to
// attach a volume to an existing machine", and removing the mounts needs a
// new machine too. Fly's status for the refusal is not documented: 400.
func sameVolume(m *machine, mounts []Mount) *apiError {
	had, want := "", ""
	if len(m.Config.Mounts) > 0 {
		had = m.Config.Mounts[0].Volume
	}
	if len(mounts) > 0 {
		want = mounts[0].Volume
	}
	switch {
	case had == want:
		return nil
	case had == "":
		return errorf(http.StatusBadRequest, "invalid",
			"machine %s has no volume and one cannot be attached to an existing machine; create a new machine with it", m.ID)
	case want == "":
		return errorf(http.StatusBadRequest, "invalid",
			"machine %s mounts volume %s, which an update cannot remove; destroy the machine instead", m.ID, had)
	}
	return errorf(http.StatusBadRequest, "invalid",
		"machine %s mounts volume %s, which an update cannot swap for %s; only the mount path can change", m.ID, had, want)
}
