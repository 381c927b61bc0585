package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// BenchmarkHotPath measures the api's hot paths through the whole
// middleware chain and the real Postgres and Redis, with 16 concurrent
// callers as make bench drives it: accept (a lifecycle call with an
// Idempotency-Key, enqueued to Asynq, alternating restart and stop so that
// every call changes the instance's status as it does when a worker runs
// them), the same without the key (one statement, the audit entry in it),
// poll (GET /operations/:id), page (GET /operations?limit=50, a
// full page) and list (GET /instances). Each caller
// has an account, a key and an instance of its own. The rate-limit buckets
// are emptied now and then so the limiter stays in the path without
// refusing. ns/op is wall time per request with 16 in flight: its inverse
// is the throughput. gc-cpu-µs/op is the collector's share of api-cpu (in
// a process that also holds the callers); mocd runs at GOGC=400
// (cmd/mocd/main.go), a test at Go's 100: set GOGC=400 to see mocd's.
//
//	go test -run '^$' -bench HotPath -benchtime 3000x -count 6 ./api/ | tee new.txt
//	benchstat old.txt new.txt
func BenchmarkHotPath(b *testing.B) {
	r := testenv.StartRedis(b)
	aq := asynq.NewClient(asynq.RedisClientOpt{Addr: r.Addr()})
	b.Cleanup(func() { aq.Close() })
	e := startAPIOn(b, testenv.Store(b), r, func(o *api.Options) {
		// Production logs at info, as JSON; the test harness's debug buffer
		// would grow without bound here.
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.Enqueuer = aq
	})
	ctx := context.Background()
	h := e.srv.Handler()
	rc := e.redis.Client()

	const callers = 16
	type caller struct{ token, instance, operation string }
	cs := make([]caller, callers)
	for i := range cs {
		acct, tok := e.account("business")
		inst, err := store.InsertInstance(ctx, e.st.DB, id.New(id.Instance), acct, fmt.Sprintf("hot%d-%s", i, id.Random(6)), "iad", store.StatusRunning)
		if err != nil {
			b.Fatal(err)
		}
		op, err := store.InsertOperation(ctx, e.st.DB, id.New(id.Operation), acct, inst.ID, store.OpRestart)
		if err != nil {
			b.Fatal(err)
		}
		// A page's worth of history, so "page" answers 50 operations.
		for range 49 {
			if _, err := store.InsertOperation(ctx, e.st.DB, id.New(id.Operation), acct, inst.ID, store.OpRestart); err != nil {
				b.Fatal(err)
			}
		}
		cs[i] = caller{token: tok, instance: inst.ID, operation: op.ID}
	}

	var next, sent atomic.Int64
	run := func(b *testing.B, req func(c caller, n int64) (*http.Request, int)) {
		b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
		pgStart := backendCPU(b, e.st)
		gc0 := gcCPU()
		var ru0 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			c := cs[int(next.Add(1)-1)%callers]
			for pb.Next() {
				n := sent.Add(1)
				if n%200 == 0 {
					rc.Del(ctx, rc.Keys(ctx, "test:rl:*").Val()...)
				}
				r, want := req(c, n)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != want {
					b.Errorf("%s %s: %d %s", r.Method, r.URL.Path, w.Code, w.Body)
					return
				}
			}
		})
		b.StopTimer()
		// CPU per request, which a loaded machine's wall times hide: the
		// api's own (this process) and its Postgres backends'.
		var ru1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		cpu := func(ru syscall.Rusage) time.Duration {
			return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		b.ReportMetric(float64((cpu(ru1)-cpu(ru0)).Microseconds())/float64(b.N), "api-cpu-µs/op")
		var pg time.Duration
		for pid, t := range backendCPU(b, e.st) {
			pg += t - pgStart[pid]
		}
		b.ReportMetric(float64(pg.Microseconds())/float64(b.N), "pg-cpu-µs/op")
		b.ReportMetric((gcCPU()-gc0)*1e6/float64(b.N), "gc-cpu-µs/op")
	}
	// accept alternates restart and stop, so that every call changes the
	// instance's status.
	accept := func(keyed bool) func(c caller, n int64) (*http.Request, int) {
		return func(c caller, n int64) (*http.Request, int) {
			action := "restart"
			if n%2 == 0 {
				action = "stop"
			}
			r := httptest.NewRequest("POST", "/api/v1/instances/"+c.instance+"/"+action, nil)
			r.Header.Set("Authorization", "Bearer "+c.token)
			if keyed {
				r.Header.Set("Idempotency-Key", "bench-"+strconv.FormatInt(n, 10)+"-"+id.Random(8))
			}
			return r, http.StatusAccepted
		}
	}
	b.Run("accept", func(b *testing.B) { run(b, accept(true)) })
	b.Run("accept-without-key", func(b *testing.B) { run(b, accept(false)) })
	b.Run("poll", func(b *testing.B) {
		run(b, func(c caller, _ int64) (*http.Request, int) {
			r := httptest.NewRequest("GET", "/api/v1/operations/"+c.operation, nil)
			r.Header.Set("Authorization", "Bearer "+c.token)
			return r, http.StatusOK
		})
	})
	b.Run("page", func(b *testing.B) {
		run(b, func(c caller, _ int64) (*http.Request, int) {
			r := httptest.NewRequest("GET", "/api/v1/operations?limit=50", nil)
			r.Header.Set("Authorization", "Bearer "+c.token)
			return r, http.StatusOK
		})
	})
	b.Run("list", func(b *testing.B) {
		run(b, func(c caller, _ int64) (*http.Request, int) {
			r := httptest.NewRequest("GET", "/api/v1/instances", nil)
			r.Header.Set("Authorization", "Bearer "+c.token)
			return r, http.StatusOK
		})
	})
}

// gcCPU is the CPU time this process has spent collecting garbage, in
// seconds, as the runtime estimates it (GOGC moves it).
func gcCPU() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64()
}

// backendCPU reads the CPU time used so far by each Postgres backend
// serving the store's database, from /proc (the test server is local).
func backendCPU(b *testing.B, st *store.Store) map[int]time.Duration {
	b.Helper()
	var pids []int
	if err := st.DB.Select(&pids, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		b.Fatal(err)
	}
	out := map[int]time.Duration{}
	for _, pid := range pids {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue // not on this machine, or gone
		}
		// Fields after the command name (which may hold spaces): utime
		// and stime are the 12th and 13th, in clock ticks (100 Hz).
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		stt, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(ut+stt) * 10 * time.Millisecond
	}
	return out
}
