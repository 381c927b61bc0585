package fly

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
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

// ExtendLease renews the lease with nonce for ttl: the holder posts again
// with its nonce (fly-go's flaps.RefreshLease). It fails with 409 when the
// lease lapsed and someone else took the machine meanwhile.
func (c *Client) ExtendLease(ctx context.Context, app, id, nonce string, ttl time.Duration) (*Lease, error) {
	secs := max(int(math.Ceil(ttl.Seconds())), 1)
	var out struct {
		Status string `json:"status"`
		Data   *Lease `json:"data"`
	}
	q := url.Values{"ttl": {strconv.Itoa(secs)}}
	h := header([]CallOption{WithLease(nonce)})
	if err := c.do(ctx, call{method: http.MethodPost, path: pathMachine(app, id) + "/lease", query: q, out: &out, header: h}); err != nil {
		return nil, err
	}
	if out.Data == nil || out.Data.Nonce == "" {
		return nil, fmt.Errorf("fly: extend lease on machine %s: answer has no nonce (status %q)", id, out.Status)
	}
	return out.Data, nil
}
