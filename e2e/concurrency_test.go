package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/store"
)

func TestQuotaUnderConcurrentCreates(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	accountID, token := sys.NewAccount(t, "pro")

	const n = 20
	var wg sync.WaitGroup
	answers := make([]*Response, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = sys.Do(t, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": fmt.Sprintf("quota-%02d", i)})
		}()
	}
	close(start)
	wg.Wait()

	var accepted []Operation
	refused := 0
	for i, r := range answers {
		switch r.Status {
		case http.StatusAccepted:
			var op Operation
			r.JSON(t, &op)
			accepted = append(accepted, op)
		case http.StatusForbidden:
			if c := r.Code(t); c != "instance_limit_reached" {
				t.Fatalf("create %d: 403 %s", i, r.Body)
			}
			refused++
		default:
			t.Fatalf("create %d: %d %s", i, r.Status, r.Body)
		}
	}
	if len(accepted) != 6 || refused != n-6 {
		t.Fatalf("%d accepted, %d refused; want 6 and %d", len(accepted), refused, n-6)
	}
	ctx := context.Background()
	if live, err := store.CountLiveInstances(ctx, sys.Store.DB, accountID); err != nil || live != 6 {
		t.Fatalf("database holds %d live instances (%v)", live, err)
	}
	var ops int
	if err := sys.Store.DB.GetContext(ctx, &ops, `SELECT count(*) FROM operations WHERE account_id = $1`, accountID); err != nil || ops != 6 {
		t.Fatalf("database holds %d operations (%v)", ops, err)
	}
	for _, op := range accepted {
		if done := sys.WaitOperation(t, token, op.ID); done.Status != "succeeded" {
			t.Fatalf("create %s: %+v", op.ID, done)
		}
	}
	if got := len(sys.Flysim.Machines()); got != 6 {
		t.Fatalf("flysim holds %d apps", got)
	}

	// Quota is freed only once a delete has succeeded.
	del := accept(t, sys, http.MethodDelete, "/api/v1/instances/"+accepted[0].InstanceID, token, nil)
	if r := sys.Do(t, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "quota-late"}); r.Status == http.StatusAccepted {
		// The delete may already have finished: that is allowed too.
		var op Operation
		r.JSON(t, &op)
		sys.WaitOperation(t, token, op.ID)
		if d := sys.WaitOperation(t, token, del.ID); d.Status != "succeeded" {
			t.Fatalf("delete: %+v", d)
		}
		return
	} else if r.Code(t) != "instance_limit_reached" {
		t.Fatalf("create while delete pending: %d %s", r.Status, r.Body)
	}
	sys.WaitOperation(t, token, del.ID)
	if r := sys.Do(t, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "quota-late"}); r.Status != http.StatusAccepted {
		t.Fatalf("create after delete: %d %s", r.Status, r.Body)
	}
}

// TestOperationsOfOneInstanceRunInAcceptOrder fires ten lifecycle calls at
// one instance at once: they must finish in the order they were accepted,
// never two at a time, and the instance's events must show the same.
func TestOperationsOfOneInstanceRunInAcceptOrder(t *testing.T) {
	t.Parallel()
	// Each machine transition takes 20ms, so the calls below are all
	// accepted while the create is still under way, and queue.
	sys := Start(t, Options{FlysimDelay: 20 * time.Millisecond})
	_, token := sys.NewAccount(t, "pro")
	calls := []string{"stop", "start", "restart", "stop", "start", "stop", "restart", "start", "stop", "start"}
	var create Operation
	var instID string
	ops := make([]Operation, len(calls))
	var order []Operation

	step(t, "ten calls are accepted at once", func(t *testing.T) {
		create = accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "busy-claw"})
		instID = create.InstanceID
		var wg sync.WaitGroup
		for i, c := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := sys.Do(t, http.MethodPost, "/api/v1/instances/"+instID+"/"+c, token, nil)
				if r.Status != http.StatusAccepted {
					t.Errorf("%s: %d %s", c, r.Status, r.Body)
					return
				}
				r.JSON(t, &ops[i])
			}()
		}
		wg.Wait()
	})

	step(t, "every operation finishes", func(t *testing.T) {
		sys.WaitOperation(t, token, create.ID)
		for _, op := range ops {
			sys.WaitOperation(t, token, op.ID)
		}
	})

	step(t, "operations run one at a time in accept order", func(t *testing.T) {
		// Accept order is the operations' sequence: the list, newest first,
		// read backwards.
		r := sys.Do(t, http.MethodGet, "/api/v1/operations?instance_id="+instID+"&limit=200", token, nil)
		var page struct {
			Data []Operation `json:"data"`
		}
		r.JSON(t, &page)
		if len(page.Data) != len(calls)+1 {
			t.Fatalf("list has %d operations", len(page.Data))
		}
		for i := len(page.Data) - 1; i >= 0; i-- {
			order = append(order, page.Data[i])
		}
		if order[0].ID != create.ID {
			t.Fatalf("oldest operation is %s, not the create", order[0].Type)
		}
		queued := 0
		for i, op := range order {
			if i > 0 && op.CreatedAt.Before(*order[i-1].FinishedAt) {
				queued++
			}
			if op.Status != "succeeded" {
				t.Fatalf("operation %d %s: %+v", i, op.Type, op)
			}
			if i == 0 {
				continue
			}
			prev := order[i-1]
			if op.StartedAt.Before(*prev.FinishedAt) {
				t.Fatalf("operation %d (%s) started at %s before operation %d (%s) finished at %s",
					i, op.Type, op.StartedAt, i-1, prev.Type, prev.FinishedAt)
			}
		}

		if queued < len(calls)/2 {
			t.Fatalf("only %d operations were accepted before their predecessor finished: the test did not make them queue", queued)
		}
	})

	step(t, "the events show the same order", func(t *testing.T) {
		// The events the worker wrote alternate strictly: each operation's
		// settled status comes after the previous one's, in accept order.
		var evs struct {
			Data []struct {
				OperationID *string `json:"operation_id"`
				ToStatus    string  `json:"to_status"`
			} `json:"data"`
		}
		sys.Do(t, http.MethodGet, "/api/v1/instances/"+instID+"/events?limit=200", token, nil).JSON(t, &evs)
		var finished []string
		settledStatus := map[string]bool{"running": true, "stopped": true}
		for i := len(evs.Data) - 1; i >= 0; i-- {
			e := evs.Data[i]
			if settledStatus[e.ToStatus] && e.OperationID != nil {
				if n := len(finished); n == 0 || finished[n-1] != *e.OperationID {
					finished = append(finished, *e.OperationID)
				}
			}
		}
		// Every operation moved the instance from its transitional status to
		// a settled one, so each wrote one such event, in accept order.
		if len(finished) != len(order) {
			t.Fatalf("events show %d operations finishing, want %d", len(finished), len(order))
		}
		for i, op := range order {
			if finished[i] != op.ID {
				t.Fatalf("event %d is of operation %s, want %s (%s): not in accept order", i, finished[i], op.ID, op.Type)
			}
		}
	})

	step(t, "the last accepted call decides the end state", func(t *testing.T) {
		// The calls raced, so the last accepted one decides the end state.
		wantStatus, wantMachine := "running", "started"
		if lastOp := order[len(order)-1]; lastOp.Type == "instance.stop" {
			wantStatus, wantMachine = "stopped", "stopped"
		}
		if last := getInstance(t, sys, token, instID); last.Status != wantStatus {
			t.Fatalf("instance ends %s, want %s", last.Status, wantStatus)
		}
		if m := sys.MachinesOf(instID); len(m) != 1 || m[0].State != wantMachine {
			t.Fatalf("machines %+v", m)
		}
	})
}
