package flysim

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Fault makes the next Count calls that match Method and Path answer Status
// and/or wait DelayMS first. The package doc gives the matching rule.
type Fault struct {
	// Method is an HTTP method; empty matches any.
	Method string `json:"method,omitempty"`
	// Path is a route pattern as registered ("/v1/apps/{app}/machines") or a
	// literal prefix of the URL path; empty matches every /v1 route.
	Path string `json:"path,omitempty"`
	// Status is the answer to give; zero lets the call through after DelayMS.
	Status int `json:"status,omitempty"`
	// DelayMS holds the call this many milliseconds before answering.
	DelayMS int `json:"delay_ms,omitempty"`
	// Count is how many calls the fault applies to: zero means one, a
	// negative count means every call until ClearFaults.
	Count int `json:"count,omitempty"`
	// Body, when set, is sent verbatim instead of a Fly-style JSON error.
	Body string `json:"body,omitempty"`
	// RetryAfter, in seconds, is sent as a Retry-After header when positive.
	RetryAfter int `json:"retry_after,omitempty"`
	// Applied carries the call out before the fault answers: the change is
	// made and its answer lost, as when a proxy fails after the API acted.
	Applied bool `json:"applied,omitempty"`
	// Reset resets the connection instead of answering (Status unused).
	Reset bool `json:"reset,omitempty"`
	// PropagationMS makes an app created by the call take this long to
	// propagate, ?wait=true or not (chaos mode's slow propagation, on
	// demand). It lets the call through unless Status, Reset or DelayMS
	// say otherwise.
	PropagationMS int `json:"propagation_ms,omitempty"`
	// Unauthorized, with PropagationMS, makes that app answer 401 rather
	// than 404 while it propagates, as chaos mode's slow propagation may
	// (flaps.WaitForApp retries both).
	Unauthorized bool `json:"unauthorized,omitempty"`
}

// InjectFault queues f behind any fault already pending.
func (s *Server) InjectFault(f Fault) {
	if f.Count == 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults drops every pending fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Faults answers the faults still pending.
func (s *Server) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, *f)
	}
	return out
}

// takeFaultLocked consumes one use of the oldest fault matching r.
func (s *Server) takeFaultLocked(r *http.Request, pattern string) *Fault {
	route := routePath(pattern)
	for i, f := range s.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if f.Path != "" && f.Path != route && !strings.HasPrefix(r.URL.Path, f.Path) {
			continue
		}
		if f.Count > 0 {
			f.Count--
			if f.Count == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		c := *f
		return &c
	}
	return nil
}

func writeFault(w http.ResponseWriter, f *Fault) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	if f.Body != "" {
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
		return
	}
	status := "unknown"
	if f.Status == http.StatusNotFound {
		status = "not_found"
	}
	writeError(w, errorf(f.Status, status, "flysim: injected fault: %d %s", f.Status, http.StatusText(f.Status)))
}

// AppMachines is one app and its machines, as GET /_flysim/machines answers.
type AppMachines struct {
	App      string    `json:"app"`
	Org      string    `json:"org"`
	Machines []Machine `json:"machines"`
}

// Machines answers every app, sorted by name, with its machines in creation
// order; destroyed machines are left out.
func (s *Server) Machines() []AppMachines {
	return s.machines(false)
}

func (s *Server) machines(withDeleted bool) []AppMachines {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AppMachines, 0, len(s.apps))
	for _, a := range s.apps {
		out = append(out, AppMachines{App: a.Name, Org: a.Organization.Slug, Machines: a.list(listFilter{withDeleted: withDeleted})})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

// Machine answers one machine, destroyed ones included, and whether it exists.
func (s *Server) Machine(app, id string) (Machine, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[app]
	if !ok {
		return Machine{}, false
	}
	m, ok := a.machines[id]
	if !ok {
		return Machine{}, false
	}
	return m.snapshot(), true
}

// ErrNotFound is returned by SetState for an unknown app or machine.
var ErrNotFound = errors.New("flysim: not found")

// SetState forces a machine into state behind its client's back, cancelling
// any transition under way, as drift would in production.
func (s *Server) SetState(app, id, state string) error {
	if !slices.Contains(knownStates, state) {
		return fmt.Errorf("flysim: unknown state %q", state)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[app]
	if !ok {
		return fmt.Errorf("app %q: %w", app, ErrNotFound)
	}
	m, ok := a.machines[id]
	if !ok {
		return fmt.Errorf("machine %s: %w", id, ErrNotFound)
	}
	s.moveLocked(m, "flysim", state)
	return nil
}

// Calls answers how many calls the route "METHOD pattern" received, faulted
// ones included; an empty method sums every method of the pattern.
func (s *Server) Calls(method, pattern string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if method != "" {
		return s.calls[method+" "+pattern]
	}
	n := 0
	for k, v := range s.calls {
		if routePath(k) == pattern {
			n += v
		}
	}
	return n
}

// ResetCalls zeroes every call counter.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

func (s *Server) adminAddFault(w http.ResponseWriter, r *http.Request) {
	var f Fault
	if e := decodeBody(r, &f); e != nil {
		writeError(w, e)
		return
	}
	if f.Status == 0 && f.DelayMS <= 0 && !f.Reset && f.PropagationMS <= 0 {
		writeError(w, errorf(http.StatusBadRequest, "invalid", "a fault needs a status, delay_ms, reset or propagation_ms"))
		return
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		writeError(w, errorf(http.StatusBadRequest, "invalid", "invalid status %d", f.Status))
		return
	}
	s.InjectFault(f)
	writeJSON(w, http.StatusCreated, map[string]bool{"ok": true})
}

func (s *Server) adminListFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) adminClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.ClearFaults()
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) adminMachines(w http.ResponseWriter, r *http.Request) {
	withDeleted, _ := strconv.ParseBool(r.URL.Query().Get("include_deleted"))
	writeJSON(w, http.StatusOK, s.machines(withDeleted))
}

func (s *Server) adminSetState(w http.ResponseWriter, r *http.Request) {
	var in struct {
		State string `json:"state"`
	}
	if e := decodeBody(r, &in); e != nil {
		writeError(w, e)
		return
	}
	app, id := r.PathValue("app"), r.PathValue("id")
	if err := s.SetState(app, id, in.State); err != nil {
		if errors.Is(err, ErrNotFound) {
			writeError(w, errorf(http.StatusNotFound, "not_found", "%v", err))
		} else {
			writeError(w, errorf(http.StatusBadRequest, "invalid", "%v", err))
		}
		return
	}
	m, _ := s.Machine(app, id)
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) adminCalls(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.calls)
}

func (s *Server) adminResetCalls(w http.ResponseWriter, _ *http.Request) {
	s.ResetCalls()
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
