package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pipelining of concurrent calls.
//
// Every API request runs the script once, and on a busy replica many run
// at the same time. Sent one by one, each costs the replica a socket write
// and a read, and Redis as much again; on loopback a write is the
// costliest system call of a request. So concurrent calls share a
// pipeline: a call joins a queue, and a sender takes the whole queue and
// writes every script in it at once (EVALSHA each, one write, one read of
// all the replies). The scripts stay separate commands: each is still
// atomic and is still decided by Redis's own clock, and Redis runs a
// pipeline's commands one after the other like any others, so nothing
// about the limits changes, only how the commands travel.
//
// At most maxSenders pipelines are in flight, each sent by a caller: a
// call that finds a free slot sends at once, itself and whatever waits, on
// its own goroutine (with one request at a time nothing waits and nothing
// changes hands). A call that finds every slot taken joins the queue.
// When a sender's pipeline comes back and calls are waiting, it hands its
// slot to the first of them, which sends the queue as the next pipeline;
// so the queue fills while the pipelines are away, each write carries
// what came meanwhile, and no caller sends more than one pipeline.
//
// A caller that gives up (its context ends) leaves the queue if its
// script has not been sent; if it has, its reply is discarded, which is
// Allow's documented timeout case (counted, and refused with
// ErrUnavailable). A caller handed the slot just as it gives up passes it
// on to a goroutine of its own, so the queue is never left unsent.

// Measured with BenchmarkAllow against a private redis-server 7.0 on
// loopback, on the client the api builds (ContextTimeoutEnabled); five
// runs each, alternating with the commit before this file, on a shared
// 2-vCPU AMD EPYC VM (2026-12-01):
//
//	go test -run '^$' -bench 'Allow/(16|serial-ctx)' -benchtime 2s ./ratelimit/
//
//	                            one by one        pipelined
//	16-at-a-time  CPU/call      78-98 (95) µs     60-71 (68) µs
//	              of it Redis   44-57 (55) µs     38-44 (43) µs
//	              time/call     51-63 (61) µs     41-48 (48) µs
//	serial-ctxtimeout           104-140 (124) µs  115-150 (125) µs, 33 → 36 allocs
//
// (medians in brackets). The CPU is the benchmark's process and
// redis-server together: the client writes and reads once per pipeline,
// and Redis reads and writes once per pipeline too. One call at a time
// costs what it did.

const (
	// maxSenders bounds the pipelines in flight, and so the connections
	// the limiter holds at once. Two keep one on the wire while the next
	// fills.
	maxSenders = 2
	// maxBatch bounds the scripts of one pipeline.
	maxBatch = 128
)

// batcher queues calls and sends them in pipelines.
type batcher struct {
	rdb     redis.UniversalClient
	timeout time.Duration
	// ctxBound is set when rdb's socket reads honour the context's
	// deadline (ContextTimeoutEnabled), so exec need not watch it itself.
	ctxBound bool

	mu      sync.Mutex
	queue   []*call
	senders int // calls (or goroutines) sending a pipeline; at most maxSenders
}

// newBatcher is the batcher of rdb, each pipeline bounded by timeout.
func newBatcher(rdb redis.UniversalClient, timeout time.Duration) *batcher {
	b := &batcher{rdb: rdb, timeout: timeout}
	switch c := rdb.(type) {
	case *redis.Client:
		b.ctxBound = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		b.ctxBound = c.Options().ContextTimeoutEnabled
	}
	return b
}

// call is one script run: its keys and arguments, then its reply.
type call struct {
	ctx  context.Context
	keys []string
	args []any

	v   []int64
	err error
	// wake receives once: when v and err are set, or when the call is
	// handed a sender's slot (next is then set).
	wake chan struct{}
	// next and gone are guarded by batcher.mu: next when the call must
	// send the queue, gone once its caller has left.
	next, gone bool
}

// do runs the script for keys and args within ctx.
func (b *batcher) do(ctx context.Context, keys []string, args []any) ([]int64, error) {
	c := &call{ctx: ctx, keys: keys, args: args}
	b.mu.Lock()
	if b.senders < maxSenders {
		b.senders++
		b.mu.Unlock()
		b.send(c)
		return c.v, c.err
	}
	c.wake = make(chan struct{}, 1)
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case <-c.wake:
		if c.next {
			b.send(c)
		}
		return c.v, c.err
	case <-ctx.Done():
		b.mu.Lock()
		c.gone = true
		next := c.next
		b.mu.Unlock()
		if next {
			go b.send(nil)
		}
		return nil, ctx.Err()
	}
}

// send holds a slot: it sends first (if any) and the queue in one
// pipeline, then hands the slot to the first caller still waiting, or
// frees it when none is. first learns its reply from its fields; the
// others are woken.
func (b *batcher) send(first *call) {
	var batch []*call
	if first != nil {
		batch = append(batch, first)
	}
	b.mu.Lock()
	batch = b.take(batch)
	b.mu.Unlock()
	switch {
	case len(batch) == 1 && batch[0] == first && b.ctxBound:
		// Alone, on its caller's goroutine and bounded by the caller's own
		// context: exactly a call without pipelining.
		first.v, first.err = script.Run(first.ctx, b.rdb, first.keys, first.args...).Int64Slice()
	case len(batch) > 0:
		b.exec(batch)
	}
	for _, c := range batch {
		if c != first {
			c.wake <- struct{}{}
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.queue) > 0 {
		c := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		if !c.gone {
			c.next = true
			c.wake <- struct{}{}
			return
		}
	}
	b.senders--
}

// take moves calls whose callers still wait from the queue into batch, up
// to maxBatch. b.mu is held.
func (b *batcher) take(batch []*call) []*call {
	n := 0
	for _, c := range b.queue {
		if len(batch) == maxBatch {
			break
		}
		n++
		if !c.gone && c.ctx.Err() == nil {
			batch = append(batch, c)
		}
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch
}

// exec sends batch in one pipeline and sets each call's reply, within
// b.timeout. Its context is none of the callers': one caller leaving must
// not fail the others' scripts. On a client whose socket reads do not
// honour the context (no ContextTimeoutEnabled), go-redis would wait up to
// its ReadTimeout (3s by default); the pipeline then runs on a goroutine
// of its own, which exec stops waiting for at the timeout.
func (b *batcher) exec(batch []*call) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	replies := make([]reply, len(batch))
	if b.ctxBound {
		b.run(ctx, batch, replies)
	} else {
		done := make(chan struct{})
		go func() {
			b.run(ctx, batch, replies)
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			for _, c := range batch {
				c.err = ctx.Err()
			}
			return
		}
	}
	for i, c := range batch {
		c.v, c.err = replies[i].v, replies[i].err
	}
}

// reply is one call's reply.
type reply struct {
	v   []int64
	err error
}

// run sends batch's scripts and puts their replies in replies: one
// EVALSHA alone, or several in one pipeline.
func (b *batcher) run(ctx context.Context, batch []*call, replies []reply) {
	if len(batch) == 1 {
		c := batch[0]
		replies[0].v, replies[0].err = script.Run(ctx, b.rdb, c.keys, c.args...).Int64Slice()
		return
	}
	cmds := b.pipeline(ctx, batch, script.EvalSha)
	var again []int
	for i := range batch {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			again = append(again, i)
			continue
		}
		replies[i].v, replies[i].err = cmds[i].Int64Slice()
	}
	if len(again) == 0 {
		return
	}
	// Redis lost its scripts (a restart, SCRIPT FLUSH): send them whole,
	// which also loads the script for the next calls.
	lost := make([]*call, len(again))
	for j, i := range again {
		lost[j] = batch[i]
	}
	cmds = b.pipeline(ctx, lost, script.Eval)
	for j, i := range again {
		replies[i].v, replies[i].err = cmds[j].Int64Slice()
	}
}

// pipeline sends one eval (script.EvalSha or script.Eval) per call in one
// pipeline and answers their commands in the same order. The pipeline's
// own error is that of its first failed command; each command holds its
// own, which is what the callers get.
func (b *batcher) pipeline(ctx context.Context, batch []*call,
	eval func(context.Context, redis.Scripter, []string, ...any) *redis.Cmd) []*redis.Cmd {
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, c := range batch {
		cmds[i] = eval(ctx, pipe, c.keys, c.args...)
	}
	pipe.Exec(ctx)
	return cmds
}
