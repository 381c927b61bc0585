package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// must(v, err)(t) fails the test on err and answers v: a query that fails
// can never look like the empty answer an assertion expects.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// twoAccounts is a store with account a (pro), holding one instance in
// creating with two operations (a create, then a stop), and account b
// (business), holding nothing.
type twoAccounts struct {
	st       *store.Store
	a, b     store.Account
	inst     store.Instance
	op1, op2 store.Operation
}

func setupTwoAccounts(t *testing.T) twoAccounts {
	t.Helper()
	ctx := context.Background()
	st := testenv.Store(t)
	f := twoAccounts{st: st}
	f.a = must(store.CreateAccount(ctx, st.DB, "ops@example.com", "pro"))(t)
	f.b = must(store.CreateAccount(ctx, st.DB, "other@example.com", "business"))(t)
	f.inst = must(store.InsertInstance(ctx, st.DB, id.New(id.Instance), f.a.ID, "claw", "iad", store.StatusCreating))(t)
	f.op1 = must(store.InsertOperation(ctx, st.DB, id.New(id.Operation), f.a.ID, f.inst.ID, store.OpCreate))(t)
	f.op2 = must(store.InsertOperation(ctx, st.DB, id.New(id.Operation), f.a.ID, f.inst.ID, store.OpStop))(t)
	return f
}

func TestInstancesOperationsEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("an inserted instance has its account's plan", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		if f.inst.Plan != "pro" || f.inst.Status != store.StatusCreating {
			t.Fatalf("inserted %+v", f.inst)
		}
	})
	t.Run("a live subdomain is unique across accounts", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		_, err := store.InsertInstance(ctx, f.st.DB, id.New(id.Instance), f.b.ID, "claw", "iad", store.StatusCreating)
		var conflict *store.ConflictError
		if !errors.As(err, &conflict) || conflict.Constraint != "instances_subdomain_live" {
			t.Fatalf("duplicate subdomain: %v", err)
		}
	})
	t.Run("another account's instance is not found", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		if _, err := store.GetInstance(ctx, f.st.DB, f.b.ID, f.inst.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("another account's instance: %v", err)
		}
	})
	t.Run("operations run in accept order", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		if !must(store.OlderUnfinished(ctx, f.st.DB, f.inst.ID, f.op2.Seq))(t) {
			t.Fatal("op2 does not see op1 ahead of it")
		}
		if must(store.OlderUnfinished(ctx, f.st.DB, f.inst.ID, f.op1.Seq))(t) {
			t.Fatal("op1 sees something ahead of it")
		}
	})
	t.Run("an operation starts once per attempt and finishes once", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		started := must(store.StartOperation(ctx, f.st.DB, f.op1.ID))(t)
		if started.Status != store.OpRunning || started.Attempts != 1 || started.StartedAt == nil {
			t.Fatalf("start: %+v", started)
		}
		again := must(store.StartOperation(ctx, f.st.DB, f.op1.ID))(t)
		if again.Attempts != 2 || !again.StartedAt.Equal(*started.StartedAt) {
			t.Fatalf("second start: %+v", again)
		}
		done := must(store.FinishOperation(ctx, f.st.DB, f.op1.ID, nil))(t)
		if done.Status != store.OpSucceeded || done.FinishedAt == nil || done.ErrorCode != nil || done.ErrorMessage != nil {
			t.Fatalf("finish: %+v", done)
		}
		if _, err := store.FinishOperation(ctx, f.st.DB, f.op1.ID, &store.OperationError{Code: "x", Message: "y"}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("finishing twice: %v", err)
		}
		if _, err := store.StartOperation(ctx, f.st.DB, f.op1.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("starting a finished operation: %v", err)
		}
	})
	t.Run("a failed operation keeps its error", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		failed := must(store.FinishOperation(ctx, f.st.DB, f.op2.ID, &store.OperationError{Code: "fly_rejected", Message: "no"}))(t)
		if failed.Status != store.OpFailed || failed.ErrorCode == nil || *failed.ErrorCode != "fly_rejected" ||
			failed.ErrorMessage == nil || *failed.ErrorMessage != "no" {
			t.Fatalf("failed operation: %+v", failed)
		}
	})
	t.Run("operations filter by status and page by seq", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		must(store.FinishOperation(ctx, f.st.DB, f.op2.ID, &store.OperationError{Code: "fly_rejected", Message: "no"}))(t)
		list := must(store.ListOperations(ctx, f.st.DB, f.a.ID, store.OperationFilter{Status: store.OpFailed}, 0, 10))(t)
		if len(list) != 1 || list[0].ID != f.op2.ID {
			t.Fatalf("failed filter: %+v", list)
		}
		list = must(store.ListOperations(ctx, f.st.DB, f.a.ID, store.OperationFilter{InstanceID: f.inst.ID}, f.op2.Seq, 10))(t)
		if len(list) != 1 || list[0].ID != f.op1.ID {
			t.Fatalf("page after op2: %+v", list)
		}
	})
	t.Run("another account sees none of the operations", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		if list := must(store.ListOperations(ctx, f.st.DB, f.b.ID, store.OperationFilter{}, 0, 10))(t); len(list) != 0 {
			t.Fatalf("account b sees %+v", list)
		}
		// The same query of the owner finds them: the empty answer above
		// is isolation, not a query that finds nothing for anyone.
		if list := must(store.ListOperations(ctx, f.st.DB, f.a.ID, store.OperationFilter{}, 0, 10))(t); len(list) != 2 {
			t.Fatalf("account a sees %d operations, want 2", len(list))
		}
	})
	t.Run("events page newest first and stay within the account", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		for _, to := range []string{store.StatusCreating, store.StatusRunning} {
			must(store.InsertInstanceEvent(ctx, f.st.DB, f.a.ID, f.inst.ID, f.op1.ID, "", to))(t)
		}
		evs := must(store.ListInstanceEvents(ctx, f.st.DB, f.a.ID, f.inst.ID, 0, 10))(t)
		if len(evs) != 2 || evs[0].ToStatus != store.StatusRunning || evs[0].FromStatus != nil {
			t.Fatalf("events %+v", evs)
		}
		if evs := must(store.ListInstanceEvents(ctx, f.st.DB, f.b.ID, f.inst.ID, 0, 10))(t); len(evs) != 0 {
			t.Fatalf("account b sees events %+v", evs)
		}
	})
	t.Run("deleting frees the subdomain and the quota", func(t *testing.T) {
		t.Parallel()
		f := setupTwoAccounts(t)
		if n := must(store.CountLiveInstances(ctx, f.st.DB, f.a.ID))(t); n != 1 {
			t.Fatalf("live %d", n)
		}
		if err := store.SetInstanceStatus(ctx, f.st.DB, f.inst.ID, store.StatusDeleted); err != nil {
			t.Fatal(err)
		}
		if n := must(store.CountLiveInstances(ctx, f.st.DB, f.a.ID))(t); n != 0 {
			t.Fatalf("live %d after delete", n)
		}
		must(store.InsertInstance(ctx, f.st.DB, id.New(id.Instance), f.b.ID, "claw", "iad", store.StatusCreating))(t)
		if gone := must(store.InstanceByID(ctx, f.st.DB, f.inst.ID))(t); gone.DeletedAt == nil {
			t.Fatal("deleted_at not set")
		}
	})
}

func TestInstanceLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	instID := id.New(id.Instance)

	if must(store.InstanceLockHeld(ctx, st.DB, instID))(t) {
		t.Fatal("held before anyone locked")
	}
	l, ok, err := st.TryLockInstance(ctx, instID)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := st.TryLockInstance(ctx, instID); err != nil || ok {
		t.Fatalf("second lock of the same instance: %v %v", ok, err)
	}
	if !must(store.InstanceLockHeld(ctx, st.DB, instID))(t) {
		t.Fatal("lock not seen as held")
	}
	other, ok, err := st.TryLockInstance(ctx, id.New(id.Instance))
	if err != nil || !ok {
		t.Fatalf("another instance's lock: %v %v", ok, err)
	}
	other.Release()
	l.Release()
	l2, ok, err := st.TryLockInstance(ctx, instID)
	if err != nil || !ok {
		t.Fatalf("lock after release: %v %v", ok, err)
	}
	l2.Release()
}
