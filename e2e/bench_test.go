package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/worker"
)

// BenchmarkRestartEndToEnd measures one restart from the client's POST to
// the operation's succeeded in Postgres, with FLYSIM_DELAY=0, for the
// worker's default poll interval and two others. Run with
//
//	go test -run '^$' -bench RestartEndToEnd -benchtime 100x ./e2e/
func BenchmarkRestartEndToEnd(b *testing.B) {
	for _, poll := range []time.Duration{10 * time.Millisecond, worker.DefaultPollInterval, time.Second} {
		b.Run("poll="+poll.String(), func(b *testing.B) {
			sys := Start(b, Options{Worker: func(o *worker.Options) { o.PollInterval = poll }})
			accountID, token := sys.NewAccount(b, "business")
			r := sys.Do(b, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "bench-claw"})
			var create Operation
			r.JSON(b, &create)
			sys.WaitOperation(b, token, create.ID)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if i > 0 && i%400 == 0 { // stay under the per-key rate limit
					b.StopTimer()
					token = sys.NewKey(b, accountID, "full")
					b.StartTimer()
				}
				r := sys.Do(b, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/restart", token, nil)
				if r.Status != http.StatusAccepted {
					b.Fatalf("restart: %d %s", r.Status, r.Body)
				}
				var op Operation
				r.JSON(b, &op)
				for {
					got, err := store.OperationByID(ctx, sys.Store.DB, op.ID)
					if err != nil {
						b.Fatal(err)
					}
					if got.Status == store.OpSucceeded {
						break
					}
					if got.Status == store.OpFailed {
						b.Fatalf("restart failed: %+v", got)
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
}
