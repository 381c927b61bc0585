package flysim

import (
	"fmt"
	"maps"
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

// knownStates are the states SetState and wait accept.
var knownStates = []string{
	StateCreated, StateStarting, StateStarted, StateStopping, StateStopped,
	StateSuspended, StateRestarting, StateDestroying, StateDestroyed, StateFailed,
	StateUpdating,
}

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

// MachineConfig is the part of a machine's config the emulator understands.
type MachineConfig struct {
	Image    string            `json:"image"`
	Guest    *Guest            `json:"guest,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Mounts   []Mount           `json:"mounts,omitempty"`
	Checks   map[string]Check  `json:"checks,omitempty"`
}

// Guest is a machine's size.
type Guest struct {
	CPUKind  string `json:"cpu_kind"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mb"`
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
}

type lease struct {
	Nonce     string
	ExpiresAt time.Time
	Owner     string
	Version   string
}

func (m *machine) snapshot() Machine {
	c := m.Machine
	c.Config.Env = maps.Clone(c.Config.Env)
	c.Config.Metadata = maps.Clone(c.Config.Metadata)
	if c.Config.Guest != nil {
		g := *c.Config.Guest
		c.Config.Guest = &g
	}
	c.Events = slices.Clone(c.Events)
	c.Config.Mounts = slices.Clone(c.Config.Mounts)
	c.Config.Checks = maps.Clone(c.Config.Checks)
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

// setLocked records st as m's state and wakes every held wait call.
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
	close(s.changed)
	s.changed = make(chan struct{})
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

// writableLocked finds a machine for a write and enforces its lease.
func (s *Server) writableLocked(r *http.Request) (*machine, *apiError) {
	_, m, e := s.machineLocked(r, false)
	if e != nil {
		return nil, e
	}
	if l := m.heldLease(); l != nil && r.Header.Get("fly-machine-lease-nonce") != l.Nonce {
		return nil, errorf(http.StatusConflict, "lease_held",
			"lease currently held by %s, expires at %s", l.Owner, l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return m, nil
}

func (s *Server) createMachine(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name       string        `json:"name"`
		Region     string        `json:"region"`
		Config     MachineConfig `json:"config"`
		SkipLaunch bool          `json:"skip_launch"`
		LeaseTTL   int           `json:"lease_ttl"`
	}
	if e := decodeBody(r, &in); e != nil {
		writeError(w, e)
		return
	}
	if strings.TrimSpace(in.Config.Image) == "" {
		writeError(w, errorf(http.StatusUnprocessableEntity, "invalid", "invalid config.image, must not be empty"))
		return
	}
	if e := validateChecks(in.Config.Checks); e != nil {
		writeError(w, e)
		return
	}
	if in.Config.Guest == nil {
		in.Config.Guest = &Guest{CPUKind: "shared", CPUs: 1, MemoryMB: 256}
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
	id := newMachineID()
	if e := s.attachLocked(a, id, in.Region, in.Config.Mounts); e != nil {
		writeError(w, e)
		return
	}
	if in.Name == "" {
		in.Name = "flysim-" + id
	}
	ts := now()
	m := &machine{Machine: Machine{
		ID:         id,
		Name:       in.Name,
		Region:     in.Region,
		InstanceID: newULID(),
		Version:    newULID(),
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

func (s *Server) listMachines(w http.ResponseWriter, r *http.Request) {
	withDeleted, _ := strconv.ParseBool(r.URL.Query().Get("include_deleted"))
	region := r.URL.Query().Get("region")
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.appLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, a.list(withDeleted, region))
}

func (a *app) list(withDeleted bool, region string) []Machine {
	out := []Machine{}
	for _, id := range a.order {
		m := a.machines[id]
		if (!withDeleted && m.State == StateDestroyed) || (region != "" && m.Region != region) {
			continue
		}
		out = append(out, m.snapshot())
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

func (s *Server) startMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	prev := m.State
	switch prev {
	case StateStarted, StateStarting:
		// Already where the caller wants it: starting twice is harmless.
	case StateStopped, StateCreated, StateSuspended, StateFailed:
		s.moveLocked(m, "user", StateStarting, StateStarted)
	default:
		writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
			"unable to start machine from current state: '%s'", prev))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "", "status": "", "previous_state": prev})
}

func (s *Server) stopMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	switch m.State {
	case StateStopped, StateStopping, StateCreated, StateSuspended, StateFailed:
		// Nothing runs: stopping is a no-op.
	case StateStarted, StateStarting, StateRestarting:
		s.moveLocked(m, "user", StateStopping, StateStopped)
	default:
		writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
			"unable to stop machine from current state: '%s'", m.State))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) restartMachine(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, e := s.writableLocked(r)
	if e != nil {
		writeError(w, e)
		return
	}
	switch m.State {
	case StateStarted:
		s.moveLocked(m, "user", StateRestarting, StateStarted)
	case StateStopped, StateCreated, StateSuspended, StateFailed:
		s.moveLocked(m, "user", StateStarting, StateStarted)
	default:
		writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
			"unable to restart machine from current state: '%s'", m.State))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

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
	switch m.State {
	case StateStopped, StateCreated, StateSuspended, StateFailed, StateDestroying:
	default:
		if !force && !kill {
			writeError(w, errorf(http.StatusPreconditionFailed, "failed_precondition",
				"unable to destroy machine in state '%s', not currently stopped or suspended: use force=true", m.State))
			return
		}
	}
	if m.State != StateDestroying {
		m.lease = nil
		s.moveLocked(m, "user", StateDestroying, StateDestroyed)
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) waitMachine(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var want []string
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			if st = strings.TrimSpace(st); st == "" {
				continue
			}
			if !slices.Contains(knownStates, st) {
				writeError(w, errorf(http.StatusBadRequest, "invalid", "invalid state %q", st))
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
		d, err := parseSeconds(v)
		if err != nil {
			writeError(w, errorf(http.StatusBadRequest, "invalid", "invalid timeout %q", v))
			return
		}
		timeout = min(max(d, time.Second), 60*time.Second)
	}

	s.mu.Lock()
	_, m, e := s.machineLocked(r, true)
	s.mu.Unlock()
	if e != nil {
		writeError(w, e)
		return
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		st, changed := m.State, s.changed
		s.mu.Unlock()
		if slices.Contains(want, st) {
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

// parseSeconds reads a timeout given in seconds, or as a Go duration ("30s").
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
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
