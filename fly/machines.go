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

// App is a Fly app.
type App struct {
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	Status       string       `json:"status"`
	Organization Organization `json:"organization"`
}

// Organization is the org an app belongs to.
type Organization struct {
	Name string `json:"name,omitempty"`
	Slug string `json:"slug"`
}

// MachineInput is the body of a create machine call.
type MachineInput struct {
	Name       string        `json:"name,omitempty"`
	Region     string        `json:"region,omitempty"`
	Config     MachineConfig `json:"config"`
	SkipLaunch bool          `json:"skip_launch,omitempty"`
}

// MachineConfig is the part of a machine's config mocd sets.
type MachineConfig struct {
	Image    string            `json:"image"`
	Guest    *Guest            `json:"guest,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Mounts   []Mount           `json:"mounts,omitempty"`
	Checks   map[string]Check  `json:"checks,omitempty"`
}

// Guest sizes a machine.
type Guest struct {
	CPUKind  string `json:"cpu_kind,omitempty"`
	CPUs     int    `json:"cpus,omitempty"`
	MemoryMB int    `json:"memory_mb,omitempty"`
}

// Machine is a Fly machine. Times are kept as the API's RFC 3339 strings.
type Machine struct {
	ID         string        `json:"id"`
	Name       string        `json:"name"`
	State      string        `json:"state"`
	Region     string        `json:"region"`
	InstanceID string        `json:"instance_id"`
	PrivateIP  string        `json:"private_ip"`
	Config     MachineConfig `json:"config"`
	CreatedAt  string        `json:"created_at"`
	UpdatedAt  string        `json:"updated_at"`
	// Checks is the status of each health check of Config.Checks.
	Checks []CheckStatus `json:"checks,omitempty"`
}

// Lease is an exclusive hold on a machine's writes.
type Lease struct {
	Nonce string `json:"nonce"`
	// ExpiresAt is in Unix seconds.
	ExpiresAt int64  `json:"expires_at"`
	Owner     string `json:"owner"`
	Version   string `json:"version"`
}

// CreateApp creates the app name in the org with slug org.
func (c *Client) CreateApp(ctx context.Context, name, org string) (*App, error) {
	var out App
	in := map[string]string{"app_name": name, "org_slug": org}
	if err := c.do(ctx, call{method: http.MethodPost, path: "/apps", in: in, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetApp reads the app name.
func (c *Client) GetApp(ctx context.Context, name string) (*App, error) {
	var out App
	if err := c.do(ctx, call{method: http.MethodGet, path: pathApp(name), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteApp deletes the app name and, with it, its machines.
func (c *Client) DeleteApp(ctx context.Context, name string) error {
	return c.do(ctx, call{method: http.MethodDelete, path: pathApp(name)})
}

// CreateMachine creates a machine in app and, unless in.SkipLaunch, starts
// it; the answer may still show it created or starting (see WaitMachine).
func (c *Client) CreateMachine(ctx context.Context, app string, in MachineInput) (*Machine, error) {
	var out Machine
	if err := c.do(ctx, call{method: http.MethodPost, path: pathApp(app) + "/machines", in: in, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListMachines answers app's machines, destroyed ones excluded.
func (c *Client) ListMachines(ctx context.Context, app string) ([]Machine, error) {
	var out []Machine
	if err := c.do(ctx, call{method: http.MethodGet, path: pathApp(app) + "/machines", out: &out}); err != nil {
		return nil, err
	}
	return out, nil
}

// GetMachine reads one machine. A destroyed machine may still be answered for
// a while, with state destroyed.
func (c *Client) GetMachine(ctx context.Context, app, id string) (*Machine, error) {
	var out Machine
	if err := c.do(ctx, call{method: http.MethodGet, path: pathMachine(app, id), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// StartMachine starts a machine and answers the state it was in before.
// Starting a started machine is not an error.
func (c *Client) StartMachine(ctx context.Context, app, id string, opts ...CallOption) (previousState string, err error) {
	var out struct {
		PreviousState string `json:"previous_state"`
	}
	err = c.do(ctx, call{method: http.MethodPost, path: pathMachine(app, id) + "/start", out: &out, header: header(opts)})
	return out.PreviousState, err
}

// StopMachine stops a machine.
func (c *Client) StopMachine(ctx context.Context, app, id string, opts ...CallOption) error {
	return c.do(ctx, call{method: http.MethodPost, path: pathMachine(app, id) + "/stop", header: header(opts)})
}

// RestartMachine restarts a machine, or starts a stopped one.
func (c *Client) RestartMachine(ctx context.Context, app, id string, opts ...CallOption) error {
	return c.do(ctx, call{method: http.MethodPost, path: pathMachine(app, id) + "/restart", header: header(opts)})
}

// DestroyMachine destroys a machine; a running one needs force.
func (c *Client) DestroyMachine(ctx context.Context, app, id string, force bool, opts ...CallOption) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.do(ctx, call{method: http.MethodDelete, path: pathMachine(app, id), query: q, header: header(opts)})
}

// WaitMachine holds until the machine is in state or timeout (rounded up to
// whole seconds, 1 to 60) passes; then it answers an *Error with StatusCode
// 408, which callers with a longer patience loop on. The HTTPClient must allow
// a request to last that long.
func (c *Client) WaitMachine(ctx context.Context, app, id, state string, timeout time.Duration) error {
	secs := int(math.Ceil(timeout.Seconds()))
	secs = min(max(secs, 1), 60)
	q := url.Values{"state": {state}, "timeout": {strconv.Itoa(secs)}}
	return c.do(ctx, call{method: http.MethodGet, path: pathMachine(app, id) + "/wait", query: q})
}

// AcquireLease takes a lease on a machine for ttl (at least a second); the
// API answers 409 while someone else holds one.
func (c *Client) AcquireLease(ctx context.Context, app, id string, ttl time.Duration) (*Lease, error) {
	secs := max(int(math.Ceil(ttl.Seconds())), 1)
	var out struct {
		Status string `json:"status"`
		Data   *Lease `json:"data"`
	}
	q := url.Values{"ttl": {strconv.Itoa(secs)}}
	if err := c.do(ctx, call{method: http.MethodPost, path: pathMachine(app, id) + "/lease", query: q, out: &out}); err != nil {
		return nil, err
	}
	if out.Data == nil || out.Data.Nonce == "" {
		return nil, fmt.Errorf("fly: lease on machine %s: answer has no nonce (status %q)", id, out.Status)
	}
	return out.Data, nil
}

// ReleaseLease gives back the lease with nonce.
func (c *Client) ReleaseLease(ctx context.Context, app, id, nonce string) error {
	return c.do(ctx, call{method: http.MethodDelete, path: pathMachine(app, id) + "/lease", header: header([]CallOption{WithLease(nonce)})})
}
