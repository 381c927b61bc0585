package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

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
