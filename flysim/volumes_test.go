package flysim_test

import (
	"net/http"
	"testing"

	"github.com/myopenclaw/mocd/flysim"
)

func (b *bundle) createVolume(app string, in map[string]any) flysim.Volume {
	b.t.Helper()
	var v flysim.Volume
	b.want(b.call("POST", "/v1/apps/"+app+"/volumes", in), http.StatusOK).decode(b.t, &v)
	return v
}

func mounted(vol, path string) map[string]any {
	return map[string]any{"image": "registry.fly.io/openclaw:1", "mounts": []map[string]any{{"volume": vol, "path": path}}}
}

func TestVolumes(t *testing.T) {
	t.Parallel()
	b := setup(t, 0)
	b.createApp("app-v")

	t.Run("create, get, list", func(t *testing.T) {
		b := b.with(t)
		v := b.createVolume("app-v", map[string]any{"name": "data", "region": "iad", "size_gb": 10})
		if len(v.ID) != 20 || v.ID[:4] != "vol_" || v.State != flysim.VolumeCreated || v.SizeGB != 10 || v.Region != "iad" ||
			!v.Encrypted || v.AttachedMachineID != nil || v.FSType != "ext4" {
			t.Fatalf("volume %+v", v)
		}
		var got flysim.Volume
		b.want(b.call("GET", "/v1/apps/app-v/volumes/"+v.ID, nil), http.StatusOK).decode(t, &got)
		if got.ID != v.ID || got.SnapshotRetention != 5 {
			t.Fatalf("get %+v", got)
		}
		var list []flysim.Volume
		b.want(b.call("GET", "/v1/apps/app-v/volumes", nil), http.StatusOK).decode(t, &list)
		if len(list) != 1 || list[0].ID != v.ID {
			t.Fatalf("list %+v", list)
		}
		if kept := b.createVolume("app-v", map[string]any{"name": "kept", "region": "iad", "size_gb": 1, "snapshot_retention": 60}); kept.SnapshotRetention != 60 {
			t.Fatalf("snapshot_retention 60 answered as %d", kept.SnapshotRetention)
		}
		b.want(b.call("GET", "/v1/apps/app-v/volumes/vol_0000000000000000", nil), http.StatusNotFound)
		b.want(b.call("GET", "/v1/apps/nope/volumes", nil), http.StatusNotFound)
	})

	t.Run("create refusals", func(t *testing.T) {
		b := b.with(t)
		for _, in := range []map[string]any{
			{"name": "Data", "region": "iad", "size_gb": 1},
			{"name": "this_name_is_longer_than_thirty_chars", "region": "iad", "size_gb": 1},
			{"name": "data", "size_gb": 1},
			{"name": "data", "region": "iad"},
			{"name": "data", "region": "iad", "size_gb": 0},
			{"name": "data", "region": "iad", "size_gb": 501},
			{"name": "data", "region": "iad", "size_gb": 1, "fstype": "zfs"},
			{"name": "data", "region": "iad", "size_gb": 1, "snapshot_retention": 0},
			{"name": "data", "region": "iad", "size_gb": 1, "snapshot_retention": 61},
		} {
			b.want(b.call("POST", "/v1/apps/app-v/volumes", in), http.StatusBadRequest)
		}
	})

	t.Run("attach through mounts: one machine, same region", func(t *testing.T) {
		b := b.with(t)
		v := b.createVolume("app-v", map[string]any{"name": "state", "region": "iad", "size_gb": 1})
		m := b.createMachine("app-v", map[string]any{"region": "iad", "config": mounted(v.ID, "/data")})
		if len(m.Config.Mounts) != 1 || m.Config.Mounts[0].Volume != v.ID || m.Config.Mounts[0].Path != "/data" {
			t.Fatalf("mounts %+v", m.Config.Mounts)
		}
		var got flysim.Volume
		b.want(b.call("GET", "/v1/apps/app-v/volumes/"+v.ID, nil), http.StatusOK).decode(t, &got)
		if got.AttachedMachineID == nil || *got.AttachedMachineID != m.ID {
			t.Fatalf("volume %+v not attached to %s", got, m.ID)
		}
		// Attached elsewhere, in another region, two mounts, a relative path.
		b.want(b.call("POST", "/v1/apps/app-v/machines", map[string]any{"region": "iad", "config": mounted(v.ID, "/data")}), http.StatusConflict)
		other := b.createVolume("app-v", map[string]any{"name": "other", "region": "lhr", "size_gb": 1})
		b.want(b.call("POST", "/v1/apps/app-v/machines", map[string]any{"region": "iad", "config": mounted(other.ID, "/data")}), http.StatusBadRequest)
		b.want(b.call("POST", "/v1/apps/app-v/machines", map[string]any{"region": "iad", "config": map[string]any{"image": "x",
			"mounts": []map[string]any{{"volume": v.ID, "path": "/a"}, {"volume": other.ID, "path": "/b"}}}}), http.StatusBadRequest)
		b.want(b.call("POST", "/v1/apps/app-v/machines", map[string]any{"region": "lhr", "config": mounted(other.ID, "data")}), http.StatusBadRequest)
		b.want(b.call("POST", "/v1/apps/app-v/machines", map[string]any{"region": "iad", "config": mounted("vol_missing000000000", "/data")}), http.StatusNotFound)

		// An update keeping the mount keeps the volume; the volume cannot be
		// deleted while the machine lives; destroying the machine frees it.
		b.want(b.call("POST", "/v1/apps/app-v/machines/"+m.ID, map[string]any{"config": mounted(v.ID, "/data")}), http.StatusOK)
		b.want(b.call("DELETE", "/v1/apps/app-v/volumes/"+v.ID, nil), http.StatusPreconditionFailed)
		b.want(b.call("DELETE", "/v1/apps/app-v/machines/"+m.ID+"?force=true", nil), http.StatusOK)
		b.want(b.call("GET", "/v1/apps/app-v/volumes/"+v.ID, nil), http.StatusOK).decode(t, &got)
		if got.AttachedMachineID != nil {
			t.Fatalf("volume still attached to a destroyed machine: %+v", got)
		}
		b.want(b.call("DELETE", "/v1/apps/app-v/volumes/"+v.ID, nil), http.StatusOK).decode(t, &got)
		if got.State != flysim.VolumePendingDestroy {
			t.Fatalf("deleted volume %+v", got)
		}
		// A destroyed volume is not attachable.
		b.want(b.call("POST", "/v1/apps/app-v/machines", map[string]any{"region": "iad", "config": mounted(v.ID, "/data")}), http.StatusPreconditionFailed)
	})

	// flyctl's deploy replaces a machine rather than change its volume by
	// an update (machines_launchinput.go): only the mount path may change.
	t.Run("an update keeps the machine's volume", func(t *testing.T) {
		b := b.with(t)
		v1 := b.createVolume("app-v", map[string]any{"name": "one", "region": "iad", "size_gb": 1})
		v2 := b.createVolume("app-v", map[string]any{"name": "two", "region": "iad", "size_gb": 1})
		m := b.createMachine("app-v", map[string]any{"region": "iad", "config": mounted(v1.ID, "/data")})
		bare := b.createMachine("app-v", map[string]any{"region": "iad", "config": map[string]any{"image": "registry.fly.io/openclaw:1"}})
		b.want(b.call("POST", "/v1/apps/app-v/machines/"+m.ID, map[string]any{"config": mounted(v2.ID, "/data")}), http.StatusBadRequest)
		b.want(b.call("POST", "/v1/apps/app-v/machines/"+m.ID, map[string]any{"config": map[string]any{"image": "registry.fly.io/openclaw:2"}}), http.StatusBadRequest)
		b.want(b.call("POST", "/v1/apps/app-v/machines/"+bare.ID, map[string]any{"config": mounted(v2.ID, "/data")}), http.StatusBadRequest)
		var got flysim.Machine
		b.want(b.call("POST", "/v1/apps/app-v/machines/"+m.ID, map[string]any{"config": mounted(v1.ID, "/state")}), http.StatusOK).decode(t, &got)
		if len(got.Config.Mounts) != 1 || got.Config.Mounts[0].Volume != v1.ID || got.Config.Mounts[0].Path != "/state" {
			t.Errorf("mounts after moving the path: %+v", got.Config.Mounts)
		}
		vols, _ := b.sim.Volumes("app-v")
		for _, v := range vols {
			switch v.ID {
			case v1.ID:
				if v.AttachedMachineID == nil || *v.AttachedMachineID != m.ID {
					t.Errorf("the machine's volume is no longer attached to it: %v", v)
				}
			case v2.ID:
				if v.AttachedMachineID != nil {
					t.Errorf("a refused update attached a volume: %v", v)
				}
			}
		}
	})

	t.Run("deleting the app takes its volumes", func(t *testing.T) {
		b := b.with(t)
		b.createApp("app-gone")
		b.createVolume("app-gone", map[string]any{"name": "data", "region": "iad", "size_gb": 1})
		b.want(b.call("DELETE", "/v1/apps/app-gone", nil), http.StatusAccepted)
		if _, ok := b.sim.Volumes("app-gone"); ok {
			t.Fatal("volumes of a deleted app still listed")
		}
		b.want(b.call("GET", "/v1/apps/app-gone/volumes", nil), http.StatusNotFound)
	})
}
