package flysim

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"
)

// Check is one machine health check of config.checks, keyed by its name
// (fly-go's fly.MachineCheck). Durations are Go duration strings ("15s").
type Check struct {
	Type        string `json:"type,omitempty"`
	Port        int    `json:"port,omitempty"`
	Kind        string `json:"kind,omitempty"`
	Interval    string `json:"interval,omitempty"`
	Timeout     string `json:"timeout,omitempty"`
	GracePeriod string `json:"grace_period,omitempty"`
	Method      string `json:"method,omitempty"`
	Path        string `json:"path,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
}

// CheckStatus is the state of one check in a machine's "checks" list
// (fly-go's fly.MachineCheckStatus: status is one of Consul's passing,
// warning, critical).
type CheckStatus struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Output    string `json:"output"`
	UpdatedAt string `json:"updated_at"`
}

// Check statuses (fly-go ConsulCheckStatus).
const (
	CheckPassing  = "passing"
	CheckWarning  = "warning"
	CheckCritical = "critical"
)

// validateChecks applies the rules of fly.MachineCheck: type is tcp or
// http, port is a TCP port, kind is informational or readiness, durations
// parse, and an http check's path starts with "/".
func validateChecks(checks map[string]Check) *apiError {
	for name, c := range checks {
		if name == "" {
			return errorf(http.StatusBadRequest, "invalid", "a check needs a name")
		}
		if c.Type != "tcp" && c.Type != "http" {
			return errorf(http.StatusBadRequest, "invalid", "check %q: type must be tcp or http, got %q", name, c.Type)
		}
		if c.Port < 1 || c.Port > 65535 {
			return errorf(http.StatusBadRequest, "invalid", "check %q: port %d is not a TCP port", name, c.Port)
		}
		if c.Kind != "" && c.Kind != "informational" && c.Kind != "readiness" {
			return errorf(http.StatusBadRequest, "invalid", "check %q: kind must be informational or readiness", name)
		}
		for field, v := range map[string]string{"interval": c.Interval, "timeout": c.Timeout, "grace_period": c.GracePeriod} {
			if v == "" {
				continue
			}
			if _, err := time.ParseDuration(v); err != nil {
				return errorf(http.StatusBadRequest, "invalid", "check %q: invalid %s %q", name, field, v)
			}
		}
		if c.Type == "http" && c.Path != "" && c.Path[0] != '/' {
			return errorf(http.StatusBadRequest, "invalid", "check %q: path must start with /", name)
		}
	}
	return nil
}

// checksLocked answers the statuses of m's checks as Fly reports them in
// the machine object, sorted by name. The emulator's rule, with the
// emulator's Delay as its time scale (a check's own grace_period and
// interval are accepted but not waited for, so tests stay fast):
//
//   - a machine that is not started fails every check (critical): nothing
//     answers on its ports;
//   - a started machine fails them until Delay after it started (the first
//     check has not passed yet), then passes them, unless its image has
//     been declared unhealthy (SetImageHealth), in which case they stay
//     critical for as long as that holds.
func (s *Server) checksLocked(m *machine) []CheckStatus {
	if len(m.Config.Checks) == 0 {
		return nil
	}
	now := time.Now()
	out := make([]CheckStatus, 0, len(m.Config.Checks))
	for name, c := range m.Config.Checks {
		st := CheckStatus{Name: name, Status: CheckCritical}
		target := fmt.Sprintf("%s:%d", m.PrivateIP, c.Port)
		if c.Type == "http" {
			target = fmt.Sprintf("http://[%s]:%d%s", m.PrivateIP, c.Port, c.Path)
		}
		switch {
		case m.State != StateStarted:
			st.Output = fmt.Sprintf("%s: machine is %s", target, m.State)
			st.UpdatedAt = m.UpdatedAt
		case now.Before(m.startedAt.Add(s.delay)):
			st.Output = fmt.Sprintf("%s: waiting for the first check", target)
			st.UpdatedAt = m.startedAt.UTC().Format(time.RFC3339Nano)
		case s.unhealthy[m.Config.Image]:
			st.Output = fmt.Sprintf("%s: connect: connection refused", target)
			st.UpdatedAt = m.startedAt.Add(s.delay).UTC().Format(time.RFC3339Nano)
		default:
			st.Status = CheckPassing
			st.Output = "Success"
			if c.Type == "http" {
				st.Output = "200 OK"
			}
			st.UpdatedAt = m.startedAt.Add(s.delay).UTC().Format(time.RFC3339Nano)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetImageHealth declares whether machines running image pass their health
// checks: the knob that makes a given OpenClaw version unhealthy. It takes
// effect at once, for running machines too. Images are compared as written
// in config.image.
func (s *Server) SetImageHealth(image string, healthy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if healthy {
		delete(s.unhealthy, image)
	} else {
		s.unhealthy[image] = true
	}
}

// UnhealthyImages answers the images declared unhealthy, sorted.
func (s *Server) UnhealthyImages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.unhealthy))
	for img := range s.unhealthy {
		out = append(out, img)
	}
	slices.Sort(out)
	return out
}

func (s *Server) adminImageHealth(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Image   string `json:"image"`
		Healthy *bool  `json:"healthy"`
	}
	if e := decodeBody(r, &in); e != nil {
		writeError(w, e)
		return
	}
	if in.Image == "" || in.Healthy == nil {
		writeError(w, errorf(http.StatusBadRequest, "invalid", `want {"image": "...", "healthy": true|false}`))
		return
	}
	s.SetImageHealth(in.Image, *in.Healthy)
	writeJSON(w, http.StatusOK, map[string][]string{"unhealthy": s.UnhealthyImages()})
}

func (s *Server) adminListImageHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]string{"unhealthy": s.UnhealthyImages()})
}
