package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// opServer serves one operation whose status the test moves along, with
// or without the wait route.
type opServer struct {
	mu       sync.Mutex
	status   OperationStatus
	errJSON  string
	waits    atomic.Int32
	gets     atomic.Int32
	noWait   int // 0: the wait route exists; 404 or 405: answer that for it
	timeouts []string
	changed  chan struct{}
}

func (o *opServer) set(s OperationStatus) {
	o.mu.Lock()
	o.status = s
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

func (o *opServer) body() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := "null"
	if o.errJSON != "" {
		e = o.errJSON
	}
	return fmt.Sprintf(`{"id":"op_1","type":"instance.restart","status":%q,"instance_id":"inst_1","created_at":"2026-11-30T00:00:00Z","started_at":null,"finished_at":null,"error":%s}`, o.status, e)
}

func (o *opServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/v1/operations/op_1":
		o.gets.Add(1)
		io.WriteString(w, o.body())
	case "/api/v1/operations/op_1/wait":
		o.waits.Add(1)
		if o.noWait != 0 {
			w.WriteHeader(o.noWait)
			io.WriteString(w, `{"error":"no","code":"not_found"}`)
			return
		}
		o.mu.Lock()
		o.timeouts = append(o.timeouts, r.URL.Query().Get("timeout"))
		ch, done := o.changed, o.status == OperationSucceeded || o.status == OperationFailed || o.status == OperationCancelled
		o.mu.Unlock()
		if !done {
			select {
			case <-ch:
			case <-r.Context().Done():
				return
			case <-time.After(holdFor(r.URL.Query().Get("timeout"))):
			}
		}
		io.WriteString(w, o.body())
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"error":"no such resource","code":"not_found"}`)
	}
}

// holdFor is the wait route's timeout parameter (default 30 s).
func holdFor(v string) time.Duration {
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil {
		n = 30
	}
	return time.Duration(n) * time.Second
}

func newOpServer(t *testing.T, noWait int) (*Client, *opServer) {
	t.Helper()
	o := &opServer{status: OperationPending, noWait: noWait, changed: make(chan struct{})}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	c, err := New("tok", WithBaseURL(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return c, o
}

func TestWaitLongPolls(t *testing.T) {
	c, o := newOpServer(t, 0)
	go func() {
		for o.waits.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		o.set(OperationRunning)
		o.set(OperationSucceeded)
	}()
	var progress []OperationStatus
	op, err := c.Wait(context.Background(), "op_1", WithProgress(func(op *Operation) { progress = append(progress, op.Status) }))
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != OperationSucceeded {
		t.Fatalf("status %s", op.Status)
	}
	if o.gets.Load() != 0 {
		t.Errorf("%d plain GETs: Wait polled although the wait route exists", o.gets.Load())
	}
	if progress[len(progress)-1] != OperationSucceeded {
		t.Errorf("progress %v", progress)
	}
	if o.timeouts[0] != "55" {
		t.Errorf("wait timeout %q, want 55 without a deadline", o.timeouts[0])
	}
}

func TestWaitFallsBackToPolling(t *testing.T) {
	for _, status := range []int{404, 405} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			c, o := newOpServer(t, status)
			go func() {
				for o.gets.Load() < 2 {
					time.Sleep(5 * time.Millisecond)
				}
				o.set(OperationSucceeded)
			}()
			op, err := c.Wait(context.Background(), "op_1", WithPollInterval(10*time.Millisecond))
			if err != nil || op.Status != OperationSucceeded {
				t.Fatalf("op %+v, err %v", op, err)
			}
			// The client remembers: the next Wait polls at once.
			waits := o.waits.Load()
			if _, err := c.Wait(context.Background(), "op_1"); err != nil {
				t.Fatal(err)
			}
			if o.waits.Load() != waits {
				t.Error("the second Wait asked the missing wait route again")
			}
		})
	}
}

func TestWaitFailedAndCancelled(t *testing.T) {
	for _, status := range []OperationStatus{OperationFailed, OperationCancelled} {
		t.Run(string(status), func(t *testing.T) {
			c, o := newOpServer(t, 0)
			if status == OperationFailed {
				o.errJSON = `{"code":"fly_rejected","message":"no"}`
			}
			o.set(status)
			op, err := c.Wait(context.Background(), "op_1")
			var failed *OperationFailedError
			if !errors.As(err, &failed) || failed.Operation.Status != status || op.Status != status {
				t.Fatalf("op %+v, err %v", op, err)
			}
			if status == OperationFailed && (op.Error == nil || !strings.Contains(err.Error(), "fly_rejected")) {
				t.Errorf("error %v does not carry the operation's error", err)
			}
		})
	}
}

func TestWaitUnknownOperation(t *testing.T) {
	c, _ := newOpServer(t, 404)
	_, err := c.Wait(context.Background(), "op_nope")
	if StatusOf(err) != 404 {
		t.Fatalf("err = %v, want the 404", err)
	}
	if c.noWaitRoute.Load() {
		t.Error("an unknown operation made the client believe the server lacks the wait route")
	}
}

func TestWaitTimeout(t *testing.T) {
	for _, noWait := range []int{0, 404} {
		t.Run(fmt.Sprint(noWait), func(t *testing.T) {
			c, o := newOpServer(t, noWait)
			o.set(OperationRunning)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			op, err := c.Wait(ctx, "op_1", WithPollInterval(10*time.Millisecond))
			if !IsTimeout(err) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a deadline", err)
			}
			if op == nil || op.Status != OperationRunning {
				t.Errorf("last seen %+v", op)
			}
		})
	}
}
