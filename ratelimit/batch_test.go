package ratelimit

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/myopenclaw/mocd/internal/wirecount"
	"github.com/myopenclaw/mocd/testenv"
)

// The pipelining's tests pile calls up behind a Redis kept busy by a
// script (Redis runs one command at a time), so that they are certainly
// concurrent, then check what the pipelines sent.

// busyRedis keeps the Redis at addr busy for d with a script that spins on
// TIME. It returns once Redis is busy or the script has ended, with a
// channel closed when the script has ended. Redis counts as busy when a
// PING on another connection gets no answer within d/4: far longer than an
// idle Redis takes even on a loaded machine.
func busyRedis(t *testing.T, addr string, d time.Duration) (ended <-chan struct{}, busy bool) {
	t.Helper()
	const spin = `local t = redis.call('TIME')
		local start = t[1] * 1000000 + t[2]
		repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
		return 1`
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer rdb.Close()
		if err := rdb.Eval(context.Background(), spin, nil, d.Microseconds()).Err(); err != nil {
			t.Errorf("busy script: %v", err)
		}
	}()
	probe := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer probe.Close()
	for {
		select {
		case <-done:
			return done, false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), d/4)
		err := probe.Ping(ctx).Err()
		cancel()
		if err != nil {
			return done, true
		}
	}
}

// mustBusyRedis is busyRedis for tests that need Redis seen busy.
func mustBusyRedis(t *testing.T, addr string, d time.Duration) <-chan struct{} {
	t.Helper()
	ended, busy := busyRedis(t, addr, d)
	if !busy {
		t.Fatal("the busy script ended before Redis was seen busy")
	}
	return ended
}

// idle waits until no call is queued and no slot is taken.
func (b *batcher) idle(t *testing.T) { t.Helper(); b.await(t, 0, 0) }

// await waits until senders slots are taken and queued calls wait.
func (b *batcher) await(t *testing.T, senders, queued int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		s, q := b.senders, len(b.queue)
		b.mu.Unlock()
		if s == senders && q == queued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batcher: %d senders and %d queued, want %d and %d", s, q, senders, queued)
		}
		time.Sleep(time.Millisecond)
	}
}

var pileLimits = []Limit{
	{Key: "{a}:k:h", Name: KeyHour, Rate: 40, Period: time.Hour},
	{Key: "{a}:m", Name: AccountMinute, Rate: 1000, Period: time.Hour},
}

// Calls piled up behind a busy Redis travel together: far fewer round
// trips and connections than calls, and the limit still admits exactly its
// rate.
func TestConcurrentCallsShareAPipeline(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	proxy, err := wirecount.Start(wirecount.Redis, r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	lim := New(rdb, Options{Timeout: 10 * time.Second})
	// The script loaded, and the connections of both slots open: only the
	// calls' own traffic is counted.
	ctx := context.Background()
	if err := script.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	conns := make([]*redis.Conn, maxSenders)
	for i := range conns {
		conns[i] = rdb.Conn()
		if err := conns[i].Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, cn := range conns {
		cn.Close()
	}

	const calls = 64
	ended := mustBusyRedis(t, r.Addr(), 500*time.Millisecond)
	before := proxy.Snapshot()
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			res, err := lim.Allow(ctx, pileLimits)
			if err != nil {
				t.Error(err)
			} else if res.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	<-ended
	sent := proxy.Snapshot().Sub(before)

	if got := allowed.Load(); got != 40 {
		t.Errorf("allowed %d of %d, want 40", got, calls)
	}
	// (and perhaps a connection's HELLO and CLIENT SETINFO: go-redis may
	// replace a pooled connection)
	if n := sent.ByName["EVALSHA (moc:rl:{a}:k:h)"]; n != calls || sent.ByName["EVAL (moc:rl:{a}:k:h)"] != 0 {
		t.Errorf("sent %v for %d calls, want %d EVALSHA", sent.ByName, calls, calls)
	}
	t.Logf("%d calls: %d round trips, %v", calls, sent.RoundTrips, sent.ByName)
	// Sent one by one, each call would be a round trip of its own.
	if sent.RoundTrips > calls/8 {
		t.Errorf("%d round trips for %d concurrent calls, want at most %d", sent.RoundTrips, calls, calls/8)
	}
	if n := rdb.PoolStats().TotalConns; n > maxSenders {
		t.Errorf("%d connections, want at most %d", n, maxSenders)
	}
	// The account's allowance was spent by the 40 admitted calls only.
	if got := allow(t, lim).Limits[1].Remaining; got != 1000-40 {
		t.Errorf("account remaining %d, want %d", got, 1000-40)
	}
}

// A pipeline whose scripts Redis has lost (a restart, SCRIPT FLUSH) sends
// them again whole, and every call gets its answer.
func TestPipelineAfterScriptFlush(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rdb := r.Client()
	lim := New(rdb, Options{Timeout: 10 * time.Second})
	allow(t, lim) // loads the script
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}

	batch := make([]*call, 5)
	for i := range batch {
		keys, args, err := lim.prepare(pileLimits)
		if err != nil {
			t.Fatal(err)
		}
		batch[i] = &call{ctx: context.Background(), keys: keys, args: args}
	}
	lim.batch.exec(batch)
	for i, c := range batch {
		if c.err != nil || len(c.v) != 2+3*len(pileLimits) || c.v[0] != 1 {
			t.Errorf("call %d: %v %v", i, c.v, c.err)
		}
	}
	if got := allow(t, lim).Limits[0].Remaining; got != 40-7 {
		t.Errorf("remaining %d, want %d", got, 40-7)
	}
}

// Callers that give up while queued are not sent: only the scripts already
// on the wire count. The slots come back once those return.
func TestGivenUpCallsAreNotSent(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	lim := New(rdb, Options{Timeout: 10 * time.Second})
	allow(t, lim)

	ended := mustBusyRedis(t, r.Addr(), time.Second)
	// maxSenders calls take the slots and wait in Redis.
	var wg sync.WaitGroup
	for range maxSenders {
		wg.Go(func() {
			if res, err := lim.Allow(context.Background(), pileLimits); err != nil || !res.Allowed {
				t.Errorf("a call on the wire: allowed=%v err=%v", res.Allowed, err)
			}
		})
	}
	lim.batch.await(t, maxSenders, 0)
	// The rest queue: callers that give up long before Redis is free
	// again, and in their midst one that waits, which the first pipeline
	// to return hands its slot to.
	giveUp := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := lim.Allow(ctx, pileLimits); !errors.Is(err, ErrUnavailable) {
			t.Errorf("a call given up: err = %v, want ErrUnavailable", err)
		}
	}
	for range 15 {
		wg.Go(giveUp)
	}
	lim.batch.await(t, maxSenders, 15)
	wg.Go(func() {
		if res, err := lim.Allow(context.Background(), pileLimits); err != nil || !res.Allowed {
			t.Errorf("the call that waits: allowed=%v err=%v", res.Allowed, err)
		}
	})
	lim.batch.await(t, maxSenders, 16)
	for range 15 {
		wg.Go(giveUp)
	}
	wg.Wait()
	<-ended
	lim.batch.idle(t)

	// 1 before, the calls on the wire, the one that waited, and this one.
	if got := allow(t, lim).Limits[0].Remaining; got != 40-(3+maxSenders) {
		t.Errorf("remaining %d, want %d: queued calls given up were sent", got, 40-(3+maxSenders))
	}
}

// Under calls that give up at random moments while Redis comes and goes
// busy, no slot is lost: the batcher ends idle and answers again.
func TestBatcherSurvivesCallersGivingUp(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	lim := New(rdb, Options{Timeout: 10 * time.Second})
	limits := []Limit{{Key: "storm", Name: KeyMinute, Rate: 1_000_000, Period: time.Minute}}

	var wg sync.WaitGroup
	for round := range 5 {
		// Seen busy or not, calls pile up or flow: both are the storm.
		ended, _ := busyRedis(t, r.Addr(), 30*time.Millisecond)
		for i := range 40 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(40))*time.Millisecond)
				defer cancel()
				if _, err := lim.Allow(ctx, limits); err != nil && !errors.Is(err, ErrUnavailable) {
					t.Errorf("round %d call %d: %v", round, i, err)
				}
			})
		}
		<-ended
	}
	wg.Wait()
	lim.batch.idle(t)
	if res, err := lim.Allow(context.Background(), limits); err != nil || !res.Allowed {
		t.Errorf("after the storm: allowed=%v err=%v", res.Allowed, err)
	}
}

// allow is one call with pileLimits that must be answered.
func allow(t *testing.T, lim *Limiter) Result {
	t.Helper()
	res, err := lim.Allow(context.Background(), pileLimits)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return res
}
