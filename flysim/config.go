package flysim

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path"
	"slices"
	"strings"
)

// MachineConfig is a machine's config. The fields the emulator reads or
// validates are typed; every other top-level field a client sends is kept in
// Other and echoed back as sent, so a machine's config comes back whole, as
// Fly answers it (GET /v1/apps/{app}/machines/{id} returns the config given
// at create or update; Machines API reference, "Machine config object").
// Fields nested inside the typed ones that the emulator does not know are
// dropped: that is the one place it is not a perfect echo.
type MachineConfig struct {
	Image    string            `json:"image"`
	Guest    *Guest            `json:"guest,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Services []Service         `json:"services,omitempty"`
	// Checks are the machine's top-level health checks, by name.
	Checks  map[string]Check `json:"checks,omitempty"`
	Restart *Restart         `json:"restart,omitempty"`
	Mounts  []Mount          `json:"mounts,omitempty"`
	// AutoDestroy destroys the machine when its process exits.
	AutoDestroy bool `json:"auto_destroy,omitempty"`
	// Other holds the top-level fields the emulator does not interpret
	// (init, files, processes, dns, stop_config, …), echoed verbatim.
	Other map[string]json.RawMessage `json:"-"`
}

// Guest is a machine's size.
type Guest struct {
	CPUKind  string `json:"cpu_kind"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mb"`
}

// Service exposes a port of the machine through Fly's proxy.
type Service struct {
	Protocol     string `json:"protocol,omitempty"`
	InternalPort int    `json:"internal_port,omitempty"`
	// Autostop is a boolean or "off", "stop", "suspend" in Fly's spec: kept
	// as sent.
	Autostop           json.RawMessage `json:"autostop,omitempty"`
	Autostart          *bool           `json:"autostart,omitempty"`
	MinMachinesRunning *int            `json:"min_machines_running,omitempty"`
	Ports              []Port          `json:"ports,omitempty"`
	Checks             []Check         `json:"checks,omitempty"`
	Concurrency        *Concurrency    `json:"concurrency,omitempty"`
}

// Port is one public port of a service.
type Port struct {
	Port       *int     `json:"port,omitempty"`
	StartPort  *int     `json:"start_port,omitempty"`
	EndPort    *int     `json:"end_port,omitempty"`
	Handlers   []string `json:"handlers,omitempty"`
	ForceHTTPS bool     `json:"force_https,omitempty"`
}

// Concurrency limits a service's connections or requests per machine.
type Concurrency struct {
	Type      string `json:"type,omitempty"`
	HardLimit int    `json:"hard_limit,omitempty"`
	SoftLimit int    `json:"soft_limit,omitempty"`
}

// Restart is a machine's restart policy.
type Restart struct {
	Policy     string `json:"policy,omitempty"`
	MaxRetries int    `json:"max_retries,omitempty"`
}

// configFields are the JSON names of MachineConfig's typed fields.
var configFields = []string{"image", "guest", "env", "metadata", "services", "checks", "restart", "mounts", "auto_destroy"}

// machineConfigAlias has MachineConfig's fields without its methods.
type machineConfigAlias MachineConfig

// UnmarshalJSON reads the typed fields and keeps every other one in Other.
func (c *MachineConfig) UnmarshalJSON(b []byte) error {
	var typed machineConfigAlias
	if err := json.Unmarshal(b, &typed); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for _, k := range configFields {
		delete(all, k)
	}
	if len(all) == 0 {
		all = nil
	}
	typed.Other = all
	*c = MachineConfig(typed)
	return nil
}

// MarshalJSON writes the typed fields and Other together.
func (c MachineConfig) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(machineConfigAlias(c))
	if err != nil || len(c.Other) == 0 {
		return b, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range c.Other {
		if _, typed := all[k]; !typed && !slices.Contains(configFields, k) {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

// clone answers a deep copy, so a snapshot shares nothing with the state.
func (c MachineConfig) clone() MachineConfig {
	// A JSON round trip copies every nested slice, map and pointer; configs
	// are small and this runs once per answer.
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("flysim: copy config: %v", err))
	}
	var out MachineConfig
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("flysim: copy config: %v", err))
	}
	out.Other = maps.Clone(out.Other)
	return out
}

// validate refuses what Fly's Machines API refuses in a config. Each rule
// names its source.
func (c *MachineConfig) validate() *apiError {
	// Machines API reference, create machine: config.image is required.
	if strings.TrimSpace(c.Image) == "" {
		return errorf(http.StatusUnprocessableEntity, "invalid", "invalid config.image, must not be empty")
	}
	// Machine config reference, restart.policy: "no", "always",
	// "on-failure" (and "spot-price" for spot machines).
	if c.Restart != nil && c.Restart.Policy != "" &&
		!slices.Contains([]string{"no", "always", "on-failure", "spot-price"}, c.Restart.Policy) {
		return errorf(http.StatusBadRequest, "invalid", "invalid config.restart.policy %q", c.Restart.Policy)
	}
	// Machine config reference, services: protocol is tcp or udp and
	// internal_port a port number.
	for i, s := range c.Services {
		if s.Protocol != "tcp" && s.Protocol != "udp" {
			return errorf(http.StatusBadRequest, "invalid", "invalid config.services[%d].protocol %q: tcp or udp", i, s.Protocol)
		}
		if s.InternalPort < 1 || s.InternalPort > 65535 {
			return errorf(http.StatusBadRequest, "invalid", "invalid config.services[%d].internal_port %d", i, s.InternalPort)
		}
		for j, ck := range s.Checks {
			if e := ck.validate(fmt.Sprintf("config.services[%d].checks[%d]", i, j)); e != nil {
				return e
			}
		}
	}
	// Top-level checks: validateChecks (checks.go).
	if e := validateChecks(c.Checks); e != nil {
		return e
	}
	// Machine config reference, mounts: a volume id and an absolute path;
	// one machine mounts at most one volume (Volumes docs: "a Machine can
	// only mount one volume at a time").
	if len(c.Mounts) > 1 {
		return errorf(http.StatusBadRequest, "invalid", "a machine can only mount one volume, got %d mounts", len(c.Mounts))
	}
	for i, m := range c.Mounts {
		if m.Volume == "" {
			return errorf(http.StatusBadRequest, "invalid", "invalid config.mounts[%d]: volume is required", i)
		}
		if !path.IsAbs(m.Path) || path.Clean(m.Path) == "/" {
			return errorf(http.StatusBadRequest, "invalid", "invalid config.mounts[%d].path %q: an absolute path other than /", i, m.Path)
		}
	}
	return nil
}

func (ck Check) validate(where string) *apiError {
	switch ck.Type {
	case "tcp":
	case "http":
		if ck.Path == "" {
			return errorf(http.StatusBadRequest, "invalid", "invalid %s: an http check needs a path", where)
		}
	default:
		return errorf(http.StatusBadRequest, "invalid", "invalid %s.type %q: tcp or http", where, ck.Type)
	}
	if ck.Port < 0 || ck.Port > 65535 {
		return errorf(http.StatusBadRequest, "invalid", "invalid %s.port %d", where, ck.Port)
	}
	return nil
}
