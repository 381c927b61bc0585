package fly

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
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
	// Name is unique among the app's live machines: a second create with
	// the same name is refused (IsNameTaken) while the first one lives.
	Name       string        `json:"name,omitempty"`
	Region     string        `json:"region,omitempty"`
	Config     MachineConfig `json:"config"`
	SkipLaunch bool          `json:"skip_launch,omitempty"`
	// LeaseTTL, in seconds, creates the machine already leased; its nonce
	// comes back in Machine.Nonce.
	LeaseTTL int `json:"lease_ttl,omitempty"`
}

// MachineConfig is a machine's config, the parts mocd sets or reads.
type MachineConfig struct {
	Image    string            `json:"image"`
	Guest    *Guest            `json:"guest,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Services []Service         `json:"services,omitempty"`
	// Checks are top-level health checks, by name.
	Checks  map[string]Check `json:"checks,omitempty"`
	Restart *Restart         `json:"restart,omitempty"`
	Mounts  []Mount          `json:"mounts,omitempty"`
}

// Guest sizes a machine.
type Guest struct {
	CPUKind  string `json:"cpu_kind,omitempty"`
	CPUs     int    `json:"cpus,omitempty"`
	MemoryMB int    `json:"memory_mb,omitempty"`
}

// Service exposes a machine port through Fly's proxy.
type Service struct {
	Protocol     string `json:"protocol"`
	InternalPort int    `json:"internal_port"`
	// Autostop is "off", "stop" or "suspend".
	Autostop           string       `json:"autostop,omitempty"`
	Autostart          *bool        `json:"autostart,omitempty"`
	MinMachinesRunning *int         `json:"min_machines_running,omitempty"`
	Ports              []Port       `json:"ports,omitempty"`
	Checks             []Check      `json:"checks,omitempty"`
	Concurrency        *Concurrency `json:"concurrency,omitempty"`
}

// Port is a public port of a service.
type Port struct {
	Port       *int     `json:"port,omitempty"`
	Handlers   []string `json:"handlers,omitempty"`
	ForceHTTPS bool     `json:"force_https,omitempty"`
}

// Concurrency limits a service per machine.
type Concurrency struct {
	Type      string `json:"type,omitempty"`
	HardLimit int    `json:"hard_limit,omitempty"`
	SoftLimit int    `json:"soft_limit,omitempty"`
}

// Restart is a machine's restart policy: "no", "always" or "on-failure".
type Restart struct {
	Policy     string `json:"policy,omitempty"`
	MaxRetries int    `json:"max_retries,omitempty"`
}

// Machine is a Fly machine. Times are kept as the API's RFC 3339 strings.
type Machine struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	// Region is the machine's region code.
	Region string `json:"region"`
	// InstanceID identifies the machine's current version; it changes with
	// every update, and a wait for stopped must name it.
	InstanceID string `json:"instance_id"`
	// Version is the newer name of InstanceID; empty on older answers.
	Version   string        `json:"version,omitempty"`
	PrivateIP string        `json:"private_ip"`
	Config    MachineConfig `json:"config"`
	CreatedAt string        `json:"created_at"`
	UpdatedAt string        `json:"updated_at"`
	// Checks is the status of each health check of Config.Checks.
	Checks []CheckStatus `json:"checks,omitempty"`
	// Nonce is the lease taken by a create with LeaseTTL.
	Nonce string `json:"nonce,omitempty"`
}

// VersionID answers the id of the machine's current version, what a wait
// names in instance_id: Version when the answer has it, as flaps does.
func (m *Machine) VersionID() string {
	if m.Version != "" {
		return m.Version
	}
	return m.InstanceID
}

// Lease is an exclusive hold on a machine's writes.
type Lease struct {
	Nonce string `json:"nonce"`
	// ExpiresAt is in Unix seconds.
	ExpiresAt int64  `json:"expires_at"`
	Owner     string `json:"owner"`
	Version   string `json:"version"`
}

// CreateApp creates the app name in the org with slug org. Like flaps it
// sends the name in "name" (the spec's CreateAppRequest) and asks with
// ?wait=true for an answer once the app exists. Even so a new app may take
// a moment to be known to every API node: call WaitForApp before using it
// from anything but this Client (whose cookie jar keeps the create's
// affinity cookie).
func (c *Client) CreateApp(ctx context.Context, name, org string) (*App, error) {
	var out App
	in := map[string]string{"name": name, "org_slug": org}
	q := url.Values{"wait": {"true"}}
	if err := c.do(ctx, call{method: http.MethodPost, path: "/apps", query: q, in: in, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// WaitForApp waits until the app name is visible, as flyctl does after
// every app create (flaps.WaitForApp): GET /v1/apps/{name}, retrying 404
// and 401 (the answers of a node the new app has not reached yet) with a
// backoff from 100 to 500 ms, for up to Options.AppWait. It answers the
// last error when the app never shows.
func (c *Client) WaitForApp(ctx context.Context, name string) (*App, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.appWait)
	defer cancel()
	pause := 100 * time.Millisecond
	var refused error // the last 404 or 401
	for {
		app, err := c.GetApp(ctx, name)
		if err == nil {
			return app, nil
		}
		if refused != nil && ctx.Err() != nil && parent.Err() == nil {
			// The wait ran out during a read: it is the refusals that
			// tell what happened, not the read cut short.
			return nil, fmt.Errorf("app %s did not appear within %s: %w", name, c.appWait, refused)
		}
		if code := StatusCode(err); code != http.StatusNotFound && code != http.StatusUnauthorized {
			return nil, err
		}
		refused = err
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("app %s did not appear within %s: %w", name, c.appWait, err)
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// ListApps answers the apps of the org with slug org.
func (c *Client) ListApps(ctx context.Context, org string) ([]App, error) {
	var out struct {
		Apps []App `json:"apps"`
	}
	q := url.Values{"org_slug": {org}}
	if err := c.do(ctx, call{method: http.MethodGet, path: "/apps", query: q, out: &out}); err != nil {
		return nil, err
	}
	return out.Apps, nil
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

// StateSettled is a wait target rather than a state: any state the machine
// keeps until someone acts (flyctl's `fly machine wait` default).
const StateSettled = "settled"

// WaitMachine holds until the machine is in state (started, stopped,
// suspended, destroyed or StateSettled) or timeout (rounded up to whole
// seconds, 1 to 60) passes; then it answers an *Error with StatusCode 408,
// which callers with a longer patience loop on. version is the machine's
// instance id (Machine.VersionID) that the wait is about; Fly's docs
// require it when waiting for stopped, and it is sent whenever given.
func (c *Client) WaitMachine(ctx context.Context, app, id, state, version string, timeout time.Duration) error {
	secs := int(math.Ceil(timeout.Seconds()))
	secs = min(max(secs, 1), 60)
	q := url.Values{"state": {state}, "timeout": {strconv.Itoa(secs)}}
	if version != "" {
		q.Set("instance_id", version)
	}
	return c.do(ctx, call{method: http.MethodGet, path: pathMachine(app, id) + "/wait", query: q, hold: time.Duration(secs) * time.Second})
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
