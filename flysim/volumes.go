package flysim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Volume states, as the API spells them. A deleted volume stays visible for a
// while in pending_destroy, one of the states fly-go's flaps.GetVolumes
// filters out (destroyedVolumeStates in flaps_volumes.go).
const (
	VolumeCreated        = "created"
	VolumePendingDestroy = "pending_destroy"
)

// Volume is a volume as the API answers it; the fields are those of fly-go's
// fly.Volume (volume_types.go).
type Volume struct {
	ID                string  `json:"id"`
	Name              string  `json:"name"`
	State             string  `json:"state"`
	SizeGB            int     `json:"size_gb"`
	Region            string  `json:"region"`
	Zone              string  `json:"zone"`
	Encrypted         bool    `json:"encrypted"`
	AttachedMachineID *string `json:"attached_machine_id"`
	AttachedAllocID   *string `json:"attached_alloc_id"`
	CreatedAt         string  `json:"created_at"`
	HostDedicationID  string  `json:"host_dedication_id"`
	SnapshotRetention int     `json:"snapshot_retention"`
	AutoBackupEnabled bool    `json:"auto_backup_enabled"`
	FSType            string  `json:"fstype"`
}

// Mount attaches a volume to a machine (config.mounts, fly-go's
// fly.MachineMount).
type Mount struct {
	Volume    string `json:"volume,omitempty"`
	Path      string `json:"path,omitempty"`
	Name      string `json:"name,omitempty"`
	SizeGB    int    `json:"size_gb,omitempty"`
	Encrypted bool   `json:"encrypted,omitempty"`
}

// volumeNameRe is the Machines API's rule for volume names: lowercase
// letters, digits and underscores, 30 characters at most. flyctl checks
// nothing on its side (internal/command/volumes/create.go sends the name
// as given); the rule is what the live API enforces, as reported against
// it in 2026 (CurateLabs/graphforge#884: hyphenated names refused,
// lowercase, digits and underscores up to 30 accepted).
var volumeNameRe = regexp.MustCompile(`^[a-z0-9_]{1,30}$`)

// Snapshot retention in days that Fly accepts: 1 to 60 (flyctl's
// internal/appconfig/validation.go refuses a [mounts] snapshot_retention
// "not between 1 and 60 days inclusive"); 5 when not given (the default
// of flyctl's volumes create --snapshot-retention).
const (
	minSnapshotRetention     = 1
	maxSnapshotRetention     = 60
	defaultSnapshotRetention = 5
)

// Volume sizes Fly accepts at creation: 1 GB to 500 GB (Fly docs, "Volumes
// overview": volumes can be up to 500 GB).
const (
	minVolumeGB = 1
	maxVolumeGB = 500
)

func newVolumeID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 16)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return "vol_" + string(b)
}

// createVolume follows POST /v1/apps/{app}/volumes (fly-go
// flaps.CreateVolume, body fly.CreateVolumeRequest). name, region and
// size_gb are required: the real API refuses a volume without a region or a
// size, and the emulator is never kinder.
func (s *Server) createVolume(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name      string `json:"name"`
		Region    string `json:"region"`
		SizeGB    *int   `json:"size_gb"`
		Encrypted *bool  `json:"encrypted"`
		FSType    string `json:"fstype"`
		// SnapshotRetention is fly.CreateVolumeRequest's snapshot_retention.
		SnapshotRetention *int `json:"snapshot_retention"`
	}
	if e := decodeBody(r, &in); e != nil {
		writeError(w, e)
		return
	}
	switch {
	case !volumeNameRe.MatchString(in.Name):
		writeError(w, errorf(http.StatusBadRequest, "invalid",
			"invalid volume name %q: use 1 to 30 lowercase letters, digits and underscores", in.Name))
		return
	case strings.TrimSpace(in.Region) == "":
		writeError(w, errorf(http.StatusBadRequest, "invalid", "region is required"))
		return
	case in.SizeGB == nil:
		writeError(w, errorf(http.StatusBadRequest, "invalid", "size_gb is required"))
		return
	case *in.SizeGB < minVolumeGB || *in.SizeGB > maxVolumeGB:
		writeError(w, errorf(http.StatusBadRequest, "invalid",
			"size_gb %d is out of range: %d to %d", *in.SizeGB, minVolumeGB, maxVolumeGB))
		return
	case in.SnapshotRetention != nil && (*in.SnapshotRetention < minSnapshotRetention || *in.SnapshotRetention > maxSnapshotRetention):
		writeError(w, errorf(http.StatusBadRequest, "invalid",
			"snapshot_retention %d is out of range: %d to %d days", *in.SnapshotRetention, minSnapshotRetention, maxSnapshotRetention))
		return
	case in.FSType != "" && in.FSType != "ext4" && in.FSType != "raw":
		// fly.CreateVolumeRequest: "The valid values are ext4 and raw".
		writeError(w, errorf(http.StatusBadRequest, "invalid", "invalid fstype %q: ext4 or raw", in.FSType))
		return
	}
	if in.FSType == "" {
		in.FSType = "ext4"
	}
	encrypted := in.Encrypted == nil || *in.Encrypted // Fly encrypts volumes unless told not to
	retention := defaultSnapshotRetention
	if in.SnapshotRetention != nil {
		retention = *in.SnapshotRetention
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	v := &Volume{
		ID:                newVolumeID(),
		Name:              in.Name,
		State:             VolumeCreated,
		SizeGB:            *in.SizeGB,
		Region:            in.Region,
		Zone:              newHex(4),
		Encrypted:         encrypted,
		CreatedAt:         time.Now().UTC().Format(time.RFC3339),
		SnapshotRetention: retention,
		FSType:            in.FSType,
	}
	a.volumes = append(a.volumes, v)
	writeJSON(w, http.StatusOK, *v)
}

// listVolumes answers every volume of the app, pending_destroy ones
// included, as GET /v1/apps/{app}/volumes does (flaps.GetAllVolumes; the
// client filters them in GetVolumes).
func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	a.sweepAttachments()
	out := make([]Volume, 0, len(a.volumes))
	for _, v := range a.volumes {
		out = append(out, *v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getVolume(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	v := a.volume(r.PathValue("volume"))
	if v == nil {
		writeError(w, errorf(http.StatusNotFound, "not_found", "volume %s not found", r.PathValue("volume")))
		return
	}
	writeJSON(w, http.StatusOK, *v)
}

// deleteVolume destroys a volume: it goes to pending_destroy, Fly's soft
// delete (Fly docs, "Volume states": a destroyed volume stays
// pending_destroy for 24 hours). The emulator refuses while a live machine
// has it mounted. Fly may instead accept and hold the volume until the
// machine lets go of it (fly-go's flaps_volumes.go counts a state
// waiting_for_detach among the destroyed ones): refusing is the stricter
// of the two, and a client that destroys the machine first, as mocd does,
// meets neither. Deleting a volume already being destroyed answers it
// again.
func (s *Server) deleteVolume(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	v := a.volume(r.PathValue("volume"))
	if v == nil {
		writeError(w, errorf(http.StatusNotFound, "not_found", "volume %s not found", r.PathValue("volume")))
		return
	}
	if v.AttachedMachineID != nil {
		if m, ok := a.machines[*v.AttachedMachineID]; ok && m.State != StateDestroyed {
			writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
				"volume %s is attached to machine %s; destroy the machine first", v.ID, m.ID))
			return
		}
	}
	v.State = VolumePendingDestroy
	v.AttachedMachineID = nil
	writeJSON(w, http.StatusOK, *v)
}

// volume answers the app's volume id, whatever its state, or nil. A volume
// whose machine has been destroyed is detached first, as on Fly.
func (a *app) volume(id string) *Volume {
	a.sweepAttachments()
	for _, v := range a.volumes {
		if v.ID == id {
			return v
		}
	}
	return nil
}

// attachLocked checks the mounts of a machine config against Fly's rules and
// attaches the volume to machineID, detaching any volume the machine had
// before. Sources: Fly docs "Volumes overview" (a volume is attached to one
// Machine at a time; a Machine mounts one volume; volume and Machine share a
// region) and the Machines API reference (config.mounts[].volume names the
// volume id; path is where it is mounted).
func (s *Server) attachLocked(a *app, machineID, region string, mounts []Mount) *apiError {
	if len(mounts) > 1 {
		return errorf(http.StatusBadRequest, "invalid", "a machine can mount only one volume, got %d mounts", len(mounts))
	}
	var want *Volume
	for _, mt := range mounts {
		if mt.Volume == "" {
			return errorf(http.StatusBadRequest, "invalid", "mounts[0].volume is required")
		}
		if !strings.HasPrefix(mt.Path, "/") || mt.Path == "/" {
			return errorf(http.StatusBadRequest, "invalid", "mounts[0].path %q must be an absolute path other than /", mt.Path)
		}
		v := a.volume(mt.Volume)
		switch {
		case v == nil:
			return errorf(http.StatusNotFound, "not_found", "volume %s not found", mt.Volume)
		case v.State != VolumeCreated:
			return errorf(http.StatusPreconditionFailed, "failed_precondition",
				"volume %s is %s and cannot be attached", v.ID, v.State)
		case v.Region != region:
			return errorf(http.StatusBadRequest, "invalid",
				"volume %s is in region %s; the machine is in %s", v.ID, v.Region, region)
		case v.AttachedMachineID != nil && *v.AttachedMachineID != machineID && a.machineLive(*v.AttachedMachineID):
			return errorf(http.StatusConflict, "conflict",
				"volume %s is already attached to machine %s", v.ID, *v.AttachedMachineID)
		}
		want = v
	}
	s.detachLocked(a, machineID)
	if want != nil {
		id := machineID
		want.AttachedMachineID = &id
	}
	return nil
}

// detachLocked frees every volume attached to machineID, as destroying the
// machine does on Fly.
func (s *Server) detachLocked(a *app, machineID string) {
	for _, v := range a.volumes {
		if v.AttachedMachineID != nil && *v.AttachedMachineID == machineID {
			v.AttachedMachineID = nil
		}
	}
}

// sweepAttachments detaches volumes from destroyed machines.
func (a *app) sweepAttachments() {
	for _, v := range a.volumes {
		if v.AttachedMachineID != nil && !a.machineLive(*v.AttachedMachineID) {
			v.AttachedMachineID = nil
		}
	}
}

func (a *app) machineLive(id string) bool {
	m, ok := a.machines[id]
	return ok && m.State != StateDestroyed
}

// Volumes answers every volume of app, in creation order, and whether the
// app exists.
func (s *Server) Volumes(appName string) ([]Volume, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[appName]
	if !ok {
		return nil, false
	}
	a.sweepAttachments()
	out := make([]Volume, 0, len(a.volumes))
	for _, v := range a.volumes {
		out = append(out, *v)
	}
	return out, true
}

// String describes a volume in logs.
func (v Volume) String() string {
	return fmt.Sprintf("%s (%s, %d GB, %s)", v.ID, v.Name, v.SizeGB, v.State)
}
