package fly

import (
	"context"
	"net/http"
)

// Check statuses of a machine's health checks (Consul's, as Fly reports
// them in Machine.Checks).
const (
	CheckPassing  = "passing"
	CheckWarning  = "warning"
	CheckCritical = "critical"
)

// Mount attaches a volume to a machine at Path.
type Mount struct {
	Volume string `json:"volume"`
	Path   string `json:"path"`
}

// Check is a machine health check of config.checks; durations are Go
// duration strings.
type Check struct {
	Type        string `json:"type"`
	Port        int    `json:"port"`
	Method      string `json:"method,omitempty"`
	Path        string `json:"path,omitempty"`
	Interval    string `json:"interval,omitempty"`
	Timeout     string `json:"timeout,omitempty"`
	GracePeriod string `json:"grace_period,omitempty"`
}

// CheckStatus is the state of one health check in a machine's "checks".
type CheckStatus struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Output    string `json:"output"`
	UpdatedAt string `json:"updated_at"`
}

// Healthy reports whether every health check of m passes, as flyctl's
// watch.MachinesChecks waits for, and the names and outputs of those that
// do not. A machine without checks is healthy once started: there is
// nothing else to wait for.
func (m *Machine) Healthy() (bool, []CheckStatus) {
	var failing []CheckStatus
	for _, c := range m.Checks {
		if c.Status != CheckPassing {
			failing = append(failing, c)
		}
	}
	return m.State == StateStarted && len(failing) == 0, failing
}

// UpdateInput is the body of an update machine call: it replaces the
// machine's whole config.
type UpdateInput struct {
	Region     string        `json:"region,omitempty"`
	Config     MachineConfig `json:"config"`
	SkipLaunch bool          `json:"skip_launch,omitempty"`
}

// UpdateMachine replaces a machine's config (POST /v1/apps/{app}/machines/{id},
// fly-go's flaps.Update). Fly restarts the machine on the new config, or
// leaves it stopped with SkipLaunch; pass the nonce of a lease held on it.
func (c *Client) UpdateMachine(ctx context.Context, app, id string, in UpdateInput, opts ...CallOption) (*Machine, error) {
	var out Machine
	if err := c.do(ctx, call{method: http.MethodPost, path: pathMachine(app, id), in: in, out: &out, header: header(opts)}); err != nil {
		return nil, err
	}
	return &out, nil
}
