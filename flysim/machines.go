package flysim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Machine states, as the API spells them.
const (
	StateCreated    = "created"
	StateStarting   = "starting"
	StateStarted    = "started"
	StateStopping   = "stopping"
	StateStopped    = "stopped"
	StateSuspended  = "suspended"
	StateRestarting = "restarting"
	StateDestroying = "destroying"
	StateDestroyed  = "destroyed"
	StateFailed     = "failed"
)

// StateSettled is not a state but a wait target: any state in which the
// machine stays until someone acts (flyctl's `fly machine wait` defaults to
// it and flaps passes it to the wait endpoint as state=settled).
const StateSettled = "settled"

// knownStates are the states SetState accepts and list filters on.
var knownStates = []string{
	StateCreated, StateStarting, StateStarted, StateStopping, StateStopped,
	StateSuspended, StateRestarting, StateDestroying, StateDestroyed, StateFailed,
	StateUpdating,
}

// waitStates are the targets the wait endpoint accepts: the Machines API
// reference lists started, stopped, suspended and destroyed for
// GET /machines/{id}/wait, and flyctl adds settled. A transient state is
// not a target Fly waits for: it answers 400.
var waitStates = []string{StateStarted, StateStopped, StateSuspended, StateDestroyed, StateSettled}

// Machine is a machine as the API answers it.
type Machine struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	State      string         `json:"state"`
	Region     string         `json:"region"`
	InstanceID string         `json:"instance_id"`
	Version    string         `json:"version"`
	PrivateIP  string         `json:"private_ip"`
	Config     MachineConfig  `json:"config"`
	ImageRef   ImageRef       `json:"image_ref"`
	CreatedAt  string         `json:"created_at"`
	UpdatedAt  string         `json:"updated_at"`
	Events     []MachineEvent `json:"events"`
	// Checks is the status of each of config.checks (checks.go).
	Checks []CheckStatus `json:"checks,omitempty"`
	// Nonce is set only in the answer to a create call with lease_ttl.
	Nonce string `json:"nonce,omitempty"`
}

// ImageRef is the parsed image reference of a machine.
type ImageRef struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
}

// MachineEvent records one state change; Timestamp is in milliseconds.
type MachineEvent struct {
	Type      string `json:"type"`
	Status    string `json:"status"`
	Source    string `json:"source"`
	Timestamp int64  `json:"timestamp"`
}

// maxEvents bounds the event list, newest first, as Fly shows only recent ones.
const maxEvents = 20

type machine struct {
	Machine
	gen   uint64 // bumped by every new operation, so stale timers do nothing
	lease *lease
	// startedAt is when the machine last entered started; its checks
	// pass one Delay later (checks.go).
	startedAt time.Time
	sim       *Server
	// launchGen is the gen of the launch that follows a create without
	// skip_launch: while it is the current operation and the machine is
	// created or starting, Fly is launching the machine.
	launchGen uint64
	// pastVersions are the instance ids the machine had before its
	// current one (each update gives it a new one).
	pastVersions []string
	// changed is closed and replaced on every state change of this
	// machine, to wake its held wait calls (and only its: one channel for
	// the whole server woke every wait of every machine on each change).
	changed chan struct{}
}

// launching reports whether the launch of a fresh machine is under way.
func (m *machine) launching() bool {
	return m.launchGen != 0 && m.launchGen == m.gen && (m.State == StateCreated || m.State == StateStarting)
}

// settled reports whether m stays in its state until someone acts.
func (m *machine) settled() bool {
	switch m.State {
	case StateStarted, StateStopped, StateSuspended, StateFailed, StateDestroyed:
		return true
	case StateCreated:
		return !m.launching()
	}
	return false
}

// newVersion gives m a new instance id, as Fly does for every new
// version of a machine (an update); the old id stays known to wait. The
// caller holds s.mu.
func (m *machine) newVersion() {
	m.pastVersions = append(m.pastVersions, m.InstanceID)
	m.InstanceID = newULID()
	m.Version = m.InstanceID
}

type lease struct {
	Nonce     string
	ExpiresAt time.Time
	Owner     string
	Version   string
}

func (m *machine) snapshot() Machine {
	c := m.Machine
	c.Config = c.Config.clone()
	c.Events = slices.Clone(c.Events)
	if m.sim != nil {
		c.Checks = m.sim.checksLocked(m)
	}
	return c
}

// heldLease answers m's lease if it has not expired.
func (m *machine) heldLease() *lease {
	if m.lease != nil && time.Now().Before(m.lease.ExpiresAt) {
		return m.lease
	}
	m.lease = nil
	return nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// setLocked records st as m's state and wakes the wait calls held on m.
func (s *Server) setLocked(m *machine, source, st string) {
	m.State = st
	m.UpdatedAt = now()
	if st == StateStarted {
		m.startedAt = time.Now()
	}
	ev := MachineEvent{Type: eventType(st), Status: st, Source: source, Timestamp: time.Now().UnixMilli()}
	m.Events = append([]MachineEvent{ev}, m.Events...)
	if len(m.Events) > maxEvents {
		m.Events = m.Events[:maxEvents]
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

func eventType(st string) string {
	switch st {
	case StateCreated:
		return "launch"
	case StateStarting, StateStarted:
		return "start"
	case StateStopping, StateStopped:
		return "exit"
	case StateRestarting:
		return "restart"
	case StateDestroying, StateDestroyed:
		return "destroy"
	default:
		return "update"
	}
}

// moveLocked starts a new operation on m: the first state is entered now and
// each following one Delay after the previous. With no Delay all happen now.
func (s *Server) moveLocked(m *machine, source string, steps ...string) {
	m.gen++
	s.setLocked(m, source, steps[0])
	if s.delay <= 0 {
		for _, st := range steps[1:] {
			s.setLocked(m, source, st)
		}
		return
	}
	s.scheduleLocked(m, m.gen, source, steps[1:])
}

func (s *Server) scheduleLocked(m *machine, gen uint64, source string, steps []string) {
	if len(steps) == 0 || s.closed {
		return
	}
	var t *time.Timer
	// The callback takes s.mu before reading t, and t is assigned while s.mu
	// is held here, so the callback always sees it.
	t = time.AfterFunc(s.delay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.timers, t)
		if s.closed || m.gen != gen {
			return
		}
		s.logger.Debug("flysim: machine state", "machine", m.ID, "state", steps[0])
		s.setLocked(m, source, steps[0])
		s.scheduleLocked(m, gen, source, steps[1:])
	})
	s.timers[t] = struct{}{}
}

// machineLocked finds the machine of a request. Destroyed machines are found
// only when withDestroyed is true, that is for reads.
func (s *Server) machineLocked(r *http.Request, withDestroyed bool) (*app, *machine, *apiError) {
	a, e := s.appLocked(r)
	if e != nil {
		return nil, nil, e
	}
	id := r.PathValue("id")
	m, ok := a.machines[id]
	if !ok || (!withDestroyed && m.State == StateDestroyed) {
		return nil, nil, errorf(http.StatusNotFound, "not_found", "machine %s not found", id)
	}
	return a, m, nil
}

// writableLocked finds a machine for a write and enforces its lease. Every
// write to a machine (start, stop, restart, destroy, update, lease and its
// release) goes through here: while a lease is held, Fly refuses a write
// without the lease's fly-machine-lease-nonce header with 409 (Machines API
// reference, "Leases"; flaps sends the nonce as that header on every
// mutating call).
func (s *Server) writableLocked(r *http.Request) (*machine, *apiError) {
	_, m, e := s.writableInAppLocked(r)
	return m, e
}

// writableInAppLocked is writableLocked for a write that also needs the
// machine's app (an update checks its mounts against the app's volumes).
func (s *Server) writableInAppLocked(r *http.Request) (*app, *machine, *apiError) {
	a, m, e := s.machineLocked(r, false)
	if e != nil {
		return nil, nil, e
	}
	if l := m.heldLease(); l != nil && r.Header.Get("fly-machine-lease-nonce") != l.Nonce {
		return nil, nil, errorf(http.StatusConflict, "lease_held",
			"lease currently held by %s, expires at %s", l.Owner, l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return a, m, nil
}

// machineByNameLocked answers the live machine of a named name, if any.
func (a *app) machineByNameLocked(name string) *machine {
	for _, id := range a.order {
		if m := a.machines[id]; m.Name == name && m.State != StateDestroyed {
			return m
		}
	}
	return nil
}

// launchInput is the body of a machine create and of a machine update:
// both take fly-go's fly.LaunchMachineInput (flaps.Launch and flaps.Update
// send the same type), so one decoder serves both.
type launchInput struct {
	Name       string        `json:"name"`
	Region     string        `json:"region"`
	Config     MachineConfig `json:"config"`
	SkipLaunch bool          `json:"skip_launch"`
	LeaseTTL   int           `json:"lease_ttl"`
}

// decodeLaunchInput reads a create or update body, checks its config
// (validate: the image is required, and the rest of config.go's rules)
// and gives a config without guest the smallest preset, shared-cpu-1x
// with 256 MB (Fly's "Machine sizing" guide; which size the API picks when
// guest is omitted is not documented, so both calls do the same here).
func decodeLaunchInput(r *http.Request) (launchInput, *apiError) {
	var in launchInput
	if e := decodeBody(r, &in); e != nil {
		return in, e
	}
	if e := in.Config.validate(); e != nil {
		return in, e
	}
	if in.Config.Guest == nil {
		in.Config.Guest = &Guest{CPUKind: "shared", CPUs: 1, MemoryMB: 256}
	}
	return in, nil
}

func (s *Server) createMachine(w http.ResponseWriter, r *http.Request) {
	in, e := decodeLaunchInput(r)
	if e != nil {
		writeError(w, e)
		return
	}
	if in.Region == "" {
		in.Region = "iad"
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	// Machine names are unique within an app (Machines API reference,
	// create machine: "name: unique name for this Machine"; flyctl picks a
	// fresh one for every machine it creates). A retried create with the
	// same name is refused while the first machine lives. The exact status
	// Fly uses is not documented: 409 with status name_taken, as for app
	// names; the worker handles any 409 or 422 the same way.
	if in.Name != "" {
		if other := a.machineByNameLocked(in.Name); other != nil {
			writeError(w, errorf(http.StatusConflict, "name_taken",
				"machine name %q is already taken by machine %s", in.Name, other.ID))
			return
		}
	}
	id := newMachineID()
	if e := s.attachLocked(a, id, in.Region, in.Config.Mounts); e != nil {
		writeError(w, e)
		return
	}
	if in.Name == "" {
		in.Name = "flysim-" + id
	}
	ts := now()
	iid := newULID()
	m := &machine{changed: make(chan struct{}), Machine: Machine{
		ID:         id,
		Name:       in.Name,
		Region:     in.Region,
		InstanceID: iid,
		Version:    iid,
		PrivateIP:  fmt.Sprintf("fdaa:0:%x:a7b:%x:%x:%x:2", rand.IntN(1<<16), rand.IntN(1<<16), rand.IntN(1<<16), rand.IntN(1<<16)),
		Config:     in.Config,
		ImageRef:   parseImageRef(in.Config.Image),
		CreatedAt:  ts,
		Events:     []MachineEvent{},
	}, sim: s}
	a.machines[id] = m
	a.order = append(a.order, id)
	if in.LeaseTTL > 0 {
		m.lease = newLease(in.LeaseTTL)
	}
	if in.SkipLaunch {
		s.moveLocked(m, "user", StateCreated)
	} else {
		s.moveLocked(m, "user", StateCreated, StateStarting, StateStarted)
		m.launchGen = m.gen
	}
	out := m.snapshot()
	if m.lease != nil {
		out.Nonce = m.lease.Nonce
	}
	writeJSON(w, http.StatusOK, out)
}

func parseImageRef(image string) ImageRef {
	var ref ImageRef
	rest := image
	if before, digest, ok := strings.Cut(rest, "@"); ok {
		rest, ref.Digest = before, digest
	}
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		rest, ref.Tag = rest[:i], rest[i+1:]
	}
	if first, after, ok := strings.Cut(rest, "/"); ok && strings.ContainsAny(first, ".:") {
		ref.Registry, rest = first, after
	} else {
		ref.Registry = "docker.io"
	}
	ref.Repository = rest
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	return ref
}

// listFilter is what GET /v1/apps/{app}/machines narrows its answer by:
// include_deleted, region, state (comma-separated; Machines API reference,
// list machines) and metadata.{key}={value} (the same reference: "filter by
// metadata, e.g. metadata.fly_process_group=app").
type listFilter struct {
	withDeleted bool
	region      string
	states      []string
	metadata    map[string]string
}

func parseListFilter(r *http.Request) (listFilter, *apiError) {
	q := r.URL.Query()
	var f listFilter
	if v := q.Get("include_deleted"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, errorf(http.StatusBadRequest, "invalid", "invalid include_deleted %q", v)
		}
		f.withDeleted = b
	}
	f.region = q.Get("region")
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			if st = strings.TrimSpace(st); st == "" {
				continue
			}
			if !slices.Contains(knownStates, st) {
				return f, errorf(http.StatusBadRequest, "invalid", "invalid state %q", st)
			}
			f.states = append(f.states, st)
		}
	}
	for k, vs := range q {
		if key, ok := strings.CutPrefix(k, "metadata."); ok && key != "" && len(vs) > 0 {
			if f.metadata == nil {
				f.metadata = map[string]string{}
			}
			f.metadata[key] = vs[0]
		}
	}
	return f, nil
}

func (f listFilter) match(m *machine) bool {
	if len(f.states) > 0 {
		// Asking for destroyed machines by state shows them, as
		// include_deleted would.
		if !slices.Contains(f.states, m.State) {
			return false
		}
	} else if !f.withDeleted && m.State == StateDestroyed {
		return false
	}
	if f.region != "" && m.Region != f.region {
		return false
	}
	for k, v := range f.metadata {
		if m.Config.Metadata[k] != v {
			return false
		}
	}
	return true
}

func (s *Server) listMachines(w http.ResponseWriter, r *http.Request) {
	f, e := parseListFilter(r)
	if e != nil {
		writeError(w, e)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, a.list(f))
}

func (a *app) list(f listFilter) []Machine {
	out := []Machine{}
	for _, id := range a.order {
		if m := a.machines[id]; f.match(m) {
			out = append(out, m.snapshot())
		}
	}
	return out
}

func (s *Server) getMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, m, e := s.machineLocked(r, true)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, m.snapshot())
}

// errLaunching is Fly's answer to a start, stop, restart or unforced
// destroy while the launch that follows a create is under way: the machine
// is already being started, and a second start is refused rather than
// merged (flyctl never starts a machine it has just created: `fly machine
// run` waits for started instead). Fly's exact wording is not documented;
// the status, 412 failed_precondition, is the one it uses for every move a
// machine's current state forbids.
func errLaunching(m *machine, verb string) *apiError {
	return errorf(http.StatusPreconditionFailed, "failed_precondition",
		"unable to %s machine from current state: '%s' (launch in progress; wait for it to be started)", verb, m.State)
}

func errFromState(m *machine, verb string) *apiError {
	return errorf(http.StatusPreconditionFailed, "failed_precondition",
		"unable to %s machine from current state: '%s'", verb, m.State)
}

// startMachine answers per state as Fly does (Machines API reference,
// start: a stopped, created or suspended machine starts; machine states
// docs for the rest): started and starting are already where the caller
// wants them (200, previous_state tells which), a machine still launching
// or between other states is 412.
func (s *Server) startMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	prev := m.State
	switch {
	case m.launching():
		writeError(w, errLaunching(m, "start"))
		return
	case prev == StateStarted || prev == StateStarting:
	case prev == StateStopped || prev == StateCreated || prev == StateSuspended || prev == StateFailed:
		s.moveLocked(m, "user", StateStarting, StateStarted)
	default:
		writeError(w, errFromState(m, "start"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "", "status": "", "previous_state": prev})
}

// stopMachine: a running machine stops; one that runs nothing is already
// stopped (200); one launching or between other states is 412.
func (s *Server) stopMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	switch {
	case m.launching():
		writeError(w, errLaunching(m, "stop"))
		return
	case m.State == StateStopped || m.State == StateStopping || m.State == StateCreated || m.State == StateSuspended || m.State == StateFailed:
	case m.State == StateStarted || m.State == StateStarting || m.State == StateRestarting:
		s.moveLocked(m, "user", StateStopping, StateStopped)
	default:
		writeError(w, errFromState(m, "stop"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// restartMachine: started restarts; a machine that runs nothing starts
// (FLY-MACHINES.md); launching or between states is 412.
func (s *Server) restartMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	switch {
	case m.launching():
		writeError(w, errLaunching(m, "restart"))
		return
	case m.State == StateStarted:
		s.moveLocked(m, "user", StateRestarting, StateStarted)
	case m.State == StateStopped || m.State == StateCreated || m.State == StateSuspended || m.State == StateFailed:
		s.moveLocked(m, "user", StateStarting, StateStarted)
	default:
		writeError(w, errFromState(m, "restart"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// destroyMachine: a machine that runs nothing is destroyed; a running or
// launching one needs force=true (kill=true from flaps), else 412 (Machines
// API reference, delete machine: "force: true to force kill a running
// machine").
func (s *Server) destroyMachine(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	force, _ := strconv.ParseBool(q.Get("force"))
	kill, _ := strconv.ParseBool(q.Get("kill"))
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	if !m.launching() {
		switch m.State {
		case StateStopped, StateCreated, StateSuspended, StateFailed, StateDestroying:
			force = true
		}
	}
	if !force && !kill && m.launching() {
		writeError(w, errLaunching(m, "destroy"))
		return
	}
	if !force && !kill {
		writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
			"unable to destroy machine in state '%s', not currently stopped or suspended: use force=true", m.State))
		return
	}
	if m.State != StateDestroying {
		m.lease = nil
		s.moveLocked(m, "user", StateDestroying, StateDestroyed)
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// waitMachine holds until the machine reaches one of the wanted states.
// The rules, each from Fly's Machines API reference for
// GET /machines/{id}/wait unless said otherwise:
//   - state may repeat or be comma-separated (fly-go since March 2026 sends
//     several); default started; only started, stopped, suspended,
//     destroyed and settled (flyctl) are targets, anything else is 400;
//   - timeout is whole seconds from 1 to 60; anything else is 400 (flaps
//     clamps on its side before sending);
//   - instance_id (or version, its newer name in fly-go) names the version
//     of the machine to wait for, and is required when waiting for stopped:
//     a stop is only meaningful for a given version, since an update
//     replaces it. An id the machine never had is 404; an earlier version
//     has been replaced and counts as stopped for the wait.
//   - 408 when the timeout passes first.
func (s *Server) waitMachine(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var want []string
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			if st = strings.TrimSpace(st); st == "" {
				continue
			}
			if !slices.Contains(waitStates, st) {
				writeError(w, errorf(http.StatusBadRequest, "invalid",
					"invalid state %q: wait for one of %s", st, strings.Join(waitStates, ", ")))
				return
			}
			want = append(want, st)
		}
	}
	if len(want) == 0 {
		want = []string{StateStarted}
	}
	timeout := 60 * time.Second
	if v := q.Get("timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			writeError(w, errorf(http.StatusBadRequest, "invalid", "invalid timeout %q: whole seconds from 1 to 60", v))
			return
		}
		timeout = time.Duration(n) * time.Second
	}
	version := q.Get("instance_id")
	if version == "" {
		version = q.Get("version")
	}
	if version == "" && slices.Contains(want, StateStopped) {
		writeError(w, errorf(http.StatusBadRequest, "invalid", "instance_id is required when waiting for the stopped state"))
		return
	}

	s.mu.Lock()
	_, m, e := s.machineLocked(r, true)
	replaced := false
	if e == nil && version != "" && version != m.InstanceID {
		if !slices.Contains(m.pastVersions, version) {
			e = errorf(http.StatusNotFound, "not_found", "machine %s has no version %s", m.ID, version)
		}
		replaced = true
	}
	s.mu.Unlock()
	if e != nil {
		writeError(w, e)
		return
	}
	if replaced {
		if slices.Contains(want, StateStopped) || slices.Contains(want, StateSettled) || slices.Contains(want, StateDestroyed) {
			writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
			return
		}
		writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
			"machine version %s has been replaced", version))
		return
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		reached := slices.Contains(want, m.State) || (slices.Contains(want, StateSettled) && m.settled())
		changed := m.changed
		s.mu.Unlock()
		if reached {
			writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			writeError(w, errorf(http.StatusRequestTimeout, "deadline_exceeded",
				"deadline_exceeded: timeout waiting for machine to be %s", strings.Join(want, " or ")))
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			writeError(w, errorf(http.StatusServiceUnavailable, "unavailable", "flysim is shutting down"))
			return
		}
	}
}

func newLease(ttlSeconds int) *lease {
	return &lease{
		Nonce:     newHex(16),
		ExpiresAt: time.Now().Add(time.Duration(ttlSeconds) * time.Second),
		Owner:     "flysim@example.com",
		Version:   newULID(),
	}
}

func leaseAnswer(l *lease) any {
	type data struct {
		Nonce     string `json:"nonce"`
		ExpiresAt int64  `json:"expires_at"`
		Owner     string `json:"owner"`
		Version   string `json:"version"`
	}
	return struct {
		Status string `json:"status"`
		Data   data   `json:"data"`
	}{"success", data{l.Nonce, l.ExpiresAt.Unix(), l.Owner, l.Version}}
}

// acquireLease grants a lease for ttl seconds (query ttl, or body {"ttl"};
// default 30). The holder may extend it by presenting its nonce.
func (s *Server) acquireLease(w http.ResponseWriter, r *http.Request) {
	ttl := 30
	if v := r.URL.Query().Get("ttl"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, errorf(http.StatusBadRequest, "invalid", "invalid ttl %q", v))
			return
		}
		ttl = n
	} else if r.ContentLength > 0 {
		var in struct {
			TTL int `json:"ttl"`
		}
		if e := decodeBody(r, &in); e != nil {
			writeError(w, e)
			return
		}
		if in.TTL > 0 {
			ttl = in.TTL
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	if l := m.heldLease(); l != nil {
		// writableLocked let us through, so the caller holds this lease.
		l.ExpiresAt = time.Now().Add(time.Duration(ttl) * time.Second)
		writeJSON(w, http.StatusOK, leaseAnswer(l))
		return
	}
	m.lease = newLease(ttl)
	writeJSON(w, http.StatusOK, leaseAnswer(m.lease))
}

func (s *Server) getLease(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, m, e := s.machineLocked(r, false)
	if e != nil {
		writeError(w, e)
		return
	}
	l := m.heldLease()
	if l == nil {
		writeError(w, errorf(http.StatusNotFound, "not_found", "no lease held on machine %s", m.ID))
		return
	}
	writeJSON(w, http.StatusOK, leaseAnswer(l))
}

// releaseLease is idempotent: releasing a lease nobody holds succeeds, so a
// deferred release after expiry is not an error.
func (s *Server) releaseLease(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	m.lease = nil
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
