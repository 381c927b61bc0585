package ratelimit_test

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/myopenclaw/mocd/internal/proccpu"
	"github.com/myopenclaw/mocd/ratelimit"
)

// The benchmarks measure the admission path, which is what nearly every
// request takes: the limits are so large that nothing is ever refused.
const benchRate = 1_000_000

// BenchmarkAllow is one request through three limits: one EVALSHA.
func BenchmarkAllow(b *testing.B) {
	e := setup(b)
	limits := []ratelimit.Limit{
		{Key: "{a}:key:k:m", Name: ratelimit.KeyMinute, Rate: benchRate, Period: time.Minute},
		{Key: "{a}:key:k:h", Name: ratelimit.KeyHour, Rate: benchRate, Period: time.Hour},
		{Key: "{a}:acct:m", Name: ratelimit.AccountMinute, Rate: benchRate, Period: time.Minute},
	}
	ctx := context.Background()
	once := func(b *testing.B) {
		res, err := e.lim.Allow(ctx, limits)
		if err != nil || !res.Allowed {
			b.Errorf("Allow: allowed=%v err=%v", res.Allowed, err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			once(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				once(b)
			}
		})
	})
	// 16 calls at a time, as the api's 16 clients in make bench, on a
	// client built as the api's is: the CPU the benchmark's process and
	// redis-server spent per call, which is what the pipelining (batch.go)
	// saves.
	b.Run("16-at-a-time", func(b *testing.B) {
		rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ContextTimeoutEnabled: true})
		b.Cleanup(func() { rdb.Close() })
		lim := ratelimit.New(rdb, ratelimit.Options{})
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		cpu := cpuMeter(b, e.redis.PID())
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if res, err := lim.Allow(ctx, limits); err != nil || !res.Allowed {
					b.Errorf("Allow: allowed=%v err=%v", res.Allowed, err)
				}
			}
		})
		cpu.report(b)
	})
	// A client whose reads honour the context spares run its goroutine.
	b.Run("serial-ctxtimeout", func(b *testing.B) {
		rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ContextTimeoutEnabled: true})
		b.Cleanup(func() { rdb.Close() })
		lim := ratelimit.New(rdb, ratelimit.Options{})
		b.ReportAllocs()
		for b.Loop() {
			if res, err := lim.Allow(ctx, limits); err != nil || !res.Allowed {
				b.Errorf("Allow: allowed=%v err=%v", res.Allowed, err)
			}
		}
	})
}

// cpuMeter measures the CPU time of this process and of process pid
// (redis-server) from now until report, and reports it per operation in
// µs: "cpu-µs/op" (both) and "redis-cpu-µs/op". /proc counts in clock ticks
// (10ms): run for a few seconds (-benchtime 3s) for figures worth reading.
func cpuMeter(b *testing.B, pid int) cpuSpan {
	b.Helper()
	return cpuSpan{self: procCPU(b, os.Getpid()), redis: procCPU(b, pid), pid: pid}
}

type cpuSpan struct {
	self, redis time.Duration
	pid         int
}

func (s cpuSpan) report(b *testing.B) {
	self, redis := procCPU(b, os.Getpid())-s.self, procCPU(b, s.pid)-s.redis
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(per(self+redis), "cpu-µs/op")
	b.ReportMetric(per(redis), "redis-cpu-µs/op")
}

// procCPU is a process's CPU time so far.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	d, err := proccpu.Of(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkRedisRate3 is the same request through github.com/go-redis/redis_rate:
// three calls, three round trips, and not atomic across the limits.
func BenchmarkRedisRate3(b *testing.B) {
	e := setup(b)
	rl := redis_rate.NewLimiter(e.rdb)
	limits := []struct {
		key   string
		limit redis_rate.Limit
	}{
		{"moc:rl:{a}:key:k:m", redis_rate.Limit{Rate: benchRate, Burst: benchRate, Period: time.Minute}},
		{"moc:rl:{a}:key:k:h", redis_rate.Limit{Rate: benchRate, Burst: benchRate, Period: time.Hour}},
		{"moc:rl:{a}:acct:m", redis_rate.Limit{Rate: benchRate, Burst: benchRate, Period: time.Minute}},
	}
	ctx := context.Background()
	once := func(b *testing.B) {
		for _, l := range limits {
			res, err := rl.Allow(ctx, l.key, l.limit)
			if err != nil || res.Allowed == 0 {
				b.Errorf("redis_rate Allow %s: %+v %v", l.key, res, err)
			}
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			once(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				once(b)
			}
		})
	})
}
