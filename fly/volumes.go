package fly

import (
	"context"
	"net/http"
	"net/url"
	"slices"
)

// Volume is a Fly volume (the fields mocd reads of fly-go's fly.Volume).
type Volume struct {
	ID                string  `json:"id"`
	Name              string  `json:"name"`
	State             string  `json:"state"`
	SizeGB            int     `json:"size_gb"`
	Region            string  `json:"region"`
	Encrypted         bool    `json:"encrypted"`
	AttachedMachineID *string `json:"attached_machine_id"`
	CreatedAt         string  `json:"created_at"`
}

// VolumeInput is the body of a create volume call.
type VolumeInput struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	SizeGB int    `json:"size_gb"`
}

// destroyedVolumeStates are the states of a volume on its way out, which
// ListVolumes leaves out as fly-go's flaps.GetVolumes does.
var destroyedVolumeStates = []string{"scheduling_destroy", "fork_cleanup", "waiting_for_detach", "pending_destroy", "destroying", "destroyed"}

// Live reports whether the volume is not being destroyed.
func (v Volume) Live() bool { return !slices.Contains(destroyedVolumeStates, v.State) }

// CreateVolume creates a volume in app.
func (c *Client) CreateVolume(ctx context.Context, app string, in VolumeInput) (*Volume, error) {
	var out Volume
	if err := c.do(ctx, call{method: http.MethodPost, path: pathApp(app) + "/volumes", in: in, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListVolumes answers app's volumes, those being destroyed left out.
func (c *Client) ListVolumes(ctx context.Context, app string) ([]Volume, error) {
	var all []Volume
	if err := c.do(ctx, call{method: http.MethodGet, path: pathApp(app) + "/volumes", out: &all}); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(v Volume) bool { return !v.Live() }), nil
}

// GetVolume reads one volume, whatever its state.
func (c *Client) GetVolume(ctx context.Context, app, id string) (*Volume, error) {
	var out Volume
	if err := c.do(ctx, call{method: http.MethodGet, path: pathVolume(app, id), out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteVolume destroys a volume; Fly refuses while a machine uses it.
func (c *Client) DeleteVolume(ctx context.Context, app, id string) error {
	return c.do(ctx, call{method: http.MethodDelete, path: pathVolume(app, id)})
}

func pathVolume(app, id string) string {
	return pathApp(app) + "/volumes/" + url.PathEscape(id)
}
