package api_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// waitBench is one api process with its Postgres listener, on its own
// database and Redis, its handler wrapped to note when each answer left.
type waitBench struct {
	st  *store.Store
	hub *notify.Hub
	url string
	// answered: path → when the handler returned (the answer written).
	answered sync.Map
}

func startWaitBench(b *testing.B) *waitBench {
	b.Helper()
	dsn := testenv.DatabaseURL(b)
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	r := testenv.StartRedis(b)
	rc := r.Client()
	hub := notify.New(dsn, api.NotifyChannels, nil)
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { _ = hub.Run(ctx); close(hubDone) }()
	srv := api.New(api.Options{
		Store: st, Redis: rc,
		Limiter:        ratelimit.New(rc, ratelimit.Options{Prefix: "bench:rl:", Timeout: 5 * time.Second}),
		Pepper:         testPepper,
		Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
		AllowPlainHTTP: true,
		Notifier:       hub,
	})
	wb := &waitBench{st: st, hub: hub}
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		wb.answered.Store(r.URL.Path, time.Now())
	}))
	runDone := make(chan struct{})
	go func() { srv.Run(ctx); close(runDone) }()
	b.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		cancel()
		<-runDone
		<-hubDone
	})
	select {
	case <-hub.Ready():
	case <-time.After(30 * time.Second):
		b.Fatal("listener not ready")
	}
	wb.url = hs.URL
	return wb
}

// account makes a business account with one full key.
func (wb *waitBench) account(b *testing.B) (accountID, token string) {
	b.Helper()
	ctx := context.Background()
	a, err := store.CreateAccount(ctx, wb.st.DB, strings.ToLower(apikey.NewKeyID())+"@example.com", "business")
	if err != nil {
		b.Fatal(err)
	}
	scopes, _ := apikey.Expand([]string{apikey.PresetFull})
	tok := apikey.Mint(apikey.NewKeyID(), testPepper)
	if _, err := store.InsertKey(ctx, wb.st.DB, store.Key{ID: tok.KeyID, AccountID: a.ID, Name: "bench",
		Prefix: tok.Prefix, SecretHash: tok.Hash, Scopes: scopes}); err != nil {
		b.Fatal(err)
	}
	return a.ID, tok.Plain
}

// pendingOps inserts n pending operations on one new instance.
func (wb *waitBench) pendingOps(b *testing.B, accountID string, n int) []store.Operation {
	b.Helper()
	ctx := context.Background()
	inst, err := store.InsertInstance(ctx, wb.st.DB, id.New(id.Instance), accountID, strings.ToLower(id.Random(12)), "iad", store.StatusRunning)
	if err != nil {
		b.Fatal(err)
	}
	ops := make([]store.Operation, n)
	for i := range ops {
		if ops[i], err = store.InsertOperation(ctx, wb.st.DB, id.New(id.Operation), accountID, inst.ID, store.OpStop); err != nil {
			b.Fatal(err)
		}
	}
	return ops
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkWaitWake measures how soon a waiter's answer follows the commit
// that finishes its operation: from the moment COMMIT is sent to the
// handler returning (server side) and to the client holding the body
// (client side). The operation is finished by a plain transaction, as the
// worker's would: FinishOperation fires the NOTIFY trigger.
//
//	go test ./api -run '^$' -bench BenchmarkWaitWake -benchtime 200x
func BenchmarkWaitWake(b *testing.B) {
	wb := startWaitBench(b)
	acct, token := wb.account(b)
	ops := wb.pendingOps(b, acct, b.N)
	client := &http.Client{}
	var server, clientSide []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		op := ops[i]
		opID := op.ID
		path := "/api/v1/operations/" + opID + "/wait"
		got := make(chan time.Time, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, wb.url+path+"?timeout=55", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				got <- time.Time{}
				return
			}
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- time.Now()
		}()
		for wb.hub.Stats().Subscribers != 1 {
			time.Sleep(100 * time.Microsecond)
		}
		tx, err := wb.st.DB.BeginTxx(context.Background(), nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := store.FinishOperation(context.Background(), tx, op, nil); err != nil {
			b.Fatal(err)
		}
		commit := time.Now()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		at := <-got
		if at.IsZero() {
			b.Fatal("wait failed")
		}
		v, _ := wb.answered.Load(path)
		server = append(server, v.(time.Time).Sub(commit))
		clientSide = append(clientSide, at.Sub(commit))
		for wb.hub.Stats().Subscribers != 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(server, .5)), "server-p50-ms")
	b.ReportMetric(ms(percentile(server, .99)), "server-p99-ms")
	b.ReportMetric(ms(percentile(clientSide, .5)), "client-p50-ms")
	b.ReportMetric(ms(percentile(clientSide, .99)), "client-p99-ms")
}

// BenchmarkIdleWaitersAndStreams holds 2,000 waiters and 500 streams open
// on one api process and reports what they cost: memory (heap + stacks)
// and goroutines per connection, the Postgres connections in use, and
// whether goroutines come back to the baseline once every client has
// gone. The clients are bare TCP connections with no goroutine of their
// own, so the figures are the server's. Run it once:
//
//	go test ./api -run '^$' -bench BenchmarkIdleWaitersAndStreams -benchtime 1x
func BenchmarkIdleWaitersAndStreams(b *testing.B) {
	const waiters, streams, accounts = 2000, 500, 10
	wb := startWaitBench(b)
	host := strings.TrimPrefix(wb.url, "http://")
	type acct struct {
		token string
		ops   []store.Operation
	}
	var as []acct
	for i := 0; i < accounts; i++ {
		a, tok := wb.account(b)
		as = append(as, acct{tok, wb.pendingOps(b, a, waiters/accounts)})
	}
	settle := func() (heap, stack uint64, goroutines int) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse, m.StackInuse, runtime.NumGoroutine()
	}
	heap0, stack0, g0 := settle()
	b.ResetTimer()

	conns := make([]net.Conn, 0, waiters+streams)
	open := func(path, token string) {
		c, err := net.Dial("tcp", host)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", path, host, token)
		conns = append(conns, c)
	}
	for i := 0; i < waiters; i++ {
		a := as[i%accounts]
		open("/api/v1/operations/"+a.ops[i/accounts].ID+"/wait?timeout=55", a.token)
	}
	subscribed := func(want int64) {
		deadline := time.Now().Add(2 * time.Minute)
		for wb.hub.Stats().Subscribers != want {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d subscribed", wb.hub.Stats().Subscribers, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	subscribed(waiters)
	heapW, stackW, gW := settle()
	for i := 0; i < streams; i++ {
		open("/api/v1/events/stream", as[i%accounts].token)
	}
	subscribed(waiters + streams)
	heap1, stack1, g1 := settle()
	b.ReportMetric(float64(heapW+stackW-heap0-stack0)/waiters/1024, "KiB/waiter")
	b.ReportMetric(float64(heap1+stack1-heapW-stackW)/streams/1024, "KiB/stream")
	b.ReportMetric(float64(gW-g0)/waiters, "goroutines/waiter")
	b.ReportMetric(float64(g1-gW)/streams, "goroutines/stream")
	var listeners, pool int
	if err := sqlx.Get(wb.st.DB, &listeners, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, notify.ApplicationName); err != nil {
		b.Fatal(err)
	}
	pool = wb.st.DB.Stats().InUse
	b.ReportMetric(float64(listeners), "pg-listeners")
	b.ReportMetric(float64(pool), "pg-conns-in-use")

	// One event wakes the streams of its account: check they answer.
	buf := bufio.NewReader(conns[waiters])
	_ = conns[waiters].SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := buf.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		b.Fatalf("stream answered %q, %v", line, err)
	}

	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(time.Minute)
	for wb.hub.Stats().Subscribers != 0 || runtime.NumGoroutine() > g0 {
		if time.Now().After(deadline) {
			b.Fatalf("after disconnecting: %d subscribers, %d goroutines (baseline %d)", wb.hub.Stats().Subscribers, runtime.NumGoroutine(), g0)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, _, g2 := settle()
	b.ReportMetric(float64(g2-g0), "goroutines-left")
}
