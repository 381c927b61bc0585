package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// BenchmarkUpgrade measures one upgrade from the client's POST to its
// operation finished, with flysim's FLYSIM_DELAY at 0 and at its mocd dev
// default of 300ms: "healthy" moves between two healthy versions and
// succeeds; "rollback" upgrades to a version flysim makes unhealthy, waits
// out the bound (MOC_UPGRADE_TIMEOUT, 2s here) and rolls back, failing with
// upgrade_rolled_back. Run with
//
//	go test -run '^$' -bench Upgrade -benchtime 5x ./e2e/
func BenchmarkUpgrade(b *testing.B) {
	for _, delay := range []time.Duration{0, 300 * time.Millisecond} {
		for _, kind := range []string{"healthy", "rollback"} {
			b.Run(fmt.Sprintf("%s/delay=%s", kind, delay), func(b *testing.B) {
				sys := Start(b, Options{FlysimDelay: delay, UpgradeTimeout: 2 * time.Second})
				_, token := sys.NewAccount(b, "business")
				r := sys.Do(b, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "bench-up", "version": "1.0.0"})
				var create Operation
				r.JSON(b, &create)
				if d := sys.WaitOperation(b, token, create.ID); d.Status != "succeeded" {
					b.Fatalf("create %+v", d)
				}
				sys.Flysim.SetImageHealth(imageOfVersion(b, "2.0.0"), false)
				versions := []string{"1.1.0", "1.0.0"} // healthy: back and forth
				if kind == "rollback" {
					versions = []string{"2.0.0"}
				}
				b.ResetTimer()
				for i := range b.N {
					v := versions[i%len(versions)]
					r := sys.Do(b, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/upgrade", token, map[string]string{"version": v})
					if r.Status != http.StatusAccepted {
						b.Fatalf("upgrade: %d %s", r.Status, r.Body)
					}
					var op Operation
					r.JSON(b, &op)
					d := sys.WaitOperation(b, token, op.ID)
					switch {
					case kind == "healthy" && d.Status != "succeeded":
						b.Fatalf("healthy upgrade %+v %+v", d, d.Error)
					case kind == "rollback" && (d.Error == nil || d.Error.Code != "upgrade_rolled_back"):
						b.Fatalf("rollback %+v %+v", d, d.Error)
					}
				}
			})
		}
	}
}
