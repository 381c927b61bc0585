package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"golang.org/x/sync/errgroup"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

func TestInstancesOperationsEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "ops@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.CreateAccount(ctx, st.DB, "other@example.com", "business")
	if err != nil {
		t.Fatal(err)
	}

	inst, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), a.ID, "claw", "iad", store.StatusCreating)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Plan != "pro" || inst.Status != store.StatusCreating {
		t.Fatalf("inserted %+v", inst)
	}
	// A live subdomain is unique across accounts; a deleted one is free.
	_, err = store.InsertInstance(ctx, st.DB, id.New(id.Instance), b.ID, "claw", "iad", store.StatusCreating)
	var conflict *store.ConflictError
	if !errors.As(err, &conflict) || conflict.Constraint != "instances_subdomain_live" {
		t.Fatalf("duplicate subdomain: %v", err)
	}
	if _, err := store.GetInstance(ctx, st.DB, b.ID, inst.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account's instance: %v", err)
	}

	// Operations: accept order, one start and one finish.
	op1, err := store.InsertOperation(ctx, st.DB, id.New(id.Operation), a.ID, inst.ID, store.OpCreate)
	if err != nil {
		t.Fatal(err)
	}
	op2, err := store.InsertOperation(ctx, st.DB, id.New(id.Operation), a.ID, inst.ID, store.OpStop)
	if err != nil {
		t.Fatal(err)
	}
	if got, older, err := store.OperationToRun(ctx, st.DB, op2.ID); err != nil || !older || got.ID != op2.ID {
		t.Fatalf("op2 does not see op1 ahead of it: %+v %v %v", got, older, err)
	}
	if got, older, err := store.OperationToRun(ctx, st.DB, op1.ID); err != nil || older || got.ID != op1.ID {
		t.Fatalf("op1 sees something ahead of it: %+v %v %v", got, older, err)
	}
	// The one-statement start acts only if the instance shows the status
	// asked for, and answers the instance with the operation.
	if _, _, _, err := store.StartShowingOperation(ctx, st.DB, op1, "some other status"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("start while the instance shows another status: %v", err)
	}
	if row, _ := store.OperationByID(ctx, st.DB, op1.ID); row.Status != store.OpPending || row.Attempts != 0 {
		t.Fatalf("a start that did not happen changed the operation: %+v", row)
	}
	started, onInst, _, err := store.StartShowingOperation(ctx, st.DB, op1, inst.Status)
	if err != nil || started.Status != store.OpRunning || started.Attempts != 1 || started.StartedAt == nil || started.ID != op1.ID {
		t.Fatalf("start: %+v %v", started, err)
	}
	if onInst.ID != inst.ID || onInst.Status != inst.Status || onInst.Plan != "pro" {
		t.Fatalf("start answered the instance %+v, want %+v", onInst, inst)
	}
	again, _ := store.StartOperation(ctx, st.DB, op1.ID)
	if again.Attempts != 2 || !again.StartedAt.Equal(*started.StartedAt) {
		t.Fatalf("second start: %+v", again)
	}
	// Finishing op1 names op2, pending behind it on the same instance.
	done, onInst, next, err := store.FinishOperation(ctx, st.DB, op1, nil)
	if err != nil || done.Status != store.OpSucceeded || done.FinishedAt == nil || onInst.ID != inst.ID || next != op2.ID {
		t.Fatalf("finish: %+v %+v next %q %v", done, onInst, next, err)
	}
	if _, _, _, err := store.FinishOperation(ctx, st.DB, op1, &store.OperationError{Code: "x", Message: "y"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("finishing twice: %v", err)
	}
	if _, err := store.StartOperation(ctx, st.DB, op1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("starting a finished operation: %v", err)
	}
	failed, _, next, err := store.FinishOperation(ctx, st.DB, op2, &store.OperationError{Code: "fly_rejected", Message: "no"})
	if err != nil || next != "" {
		t.Fatalf("finish op2: next %q %v", next, err)
	}
	if failed.Status != store.OpFailed || failed.ErrorCode == nil || *failed.ErrorCode != "fly_rejected" ||
		failed.ErrorMessage == nil || *failed.ErrorMessage != "no" {
		t.Fatalf("failed operation: %+v", failed)
	}
	if done.ErrorCode != nil || done.ErrorMessage != nil {
		t.Fatalf("succeeded operation has an error: %+v", done)
	}

	list, err := store.ListOperations(ctx, st.DB, a.ID, store.OperationFilter{Status: store.OpFailed}, 0, 10)
	if err != nil || len(list) != 1 || list[0].ID != op2.ID {
		t.Fatalf("failed filter: %+v %v", list, err)
	}
	list, _ = store.ListOperations(ctx, st.DB, a.ID, store.OperationFilter{InstanceID: inst.ID}, op2.Seq, 10)
	if len(list) != 1 || list[0].ID != op1.ID {
		t.Fatalf("page after op2: %+v", list)
	}
	if list, _ = store.ListOperations(ctx, st.DB, b.ID, store.OperationFilter{}, 0, 10); len(list) != 0 {
		t.Fatalf("account b sees %+v", list)
	}

	// Events page newest first and stay within the account.
	for _, to := range []string{store.StatusCreating, store.StatusRunning} {
		if _, err := store.InsertInstanceEvent(ctx, st.DB, a.ID, inst.ID, op1.ID, "", to); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := store.ListInstanceEvents(ctx, st.DB, a.ID, inst.ID, 0, 10)
	if err != nil || len(evs) != 2 || evs[0].ToStatus != store.StatusRunning || evs[0].FromStatus != nil {
		t.Fatalf("events %+v %v", evs, err)
	}
	if evs, _ := store.ListInstanceEvents(ctx, st.DB, b.ID, inst.ID, 0, 10); len(evs) != 0 {
		t.Fatalf("account b sees events %+v", evs)
	}

	// Deleting frees the subdomain and the quota.
	if n, _ := store.CountLiveInstances(ctx, st.DB, a.ID); n != 1 {
		t.Fatalf("live %d", n)
	}
	// ChangeInstanceStatus answers the row as the change left it, plan
	// included (the worker builds its webhook payload from it), and the
	// event row it wrote in the same statement.
	before, err := store.InstanceByID(ctx, st.DB, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	running, ev, err := store.ChangeInstanceStatus(ctx, st.DB, before, store.StatusRunning, op1.ID)
	if err != nil || running.Status != store.StatusRunning || running.Plan != "pro" || running.AccountID != a.ID || running.DeletedAt != nil {
		t.Fatalf("ChangeInstanceStatus: %+v %v", running, err)
	}
	if reread, err := store.InstanceByID(ctx, st.DB, inst.ID); err != nil || !reread.UpdatedAt.Equal(running.UpdatedAt) {
		t.Fatalf("ChangeInstanceStatus answered %+v, the row is %+v (%v)", running, reread, err)
	}
	evs, err = store.ListInstanceEvents(ctx, st.DB, a.ID, inst.ID, 0, 1)
	if err != nil || len(evs) != 1 || !reflect.DeepEqual(evs[0], ev) || *ev.FromStatus != before.Status || *ev.OperationID != op1.ID {
		t.Fatalf("ChangeInstanceStatus answered the event %+v; the newest is %+v (%v)", ev, evs, err)
	}
	if _, _, err := store.ChangeInstanceStatus(ctx, st.DB, store.Instance{ID: "inst_none"}, store.StatusRunning, ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ChangeInstanceStatus of no instance: %v", err)
	}
	if _, _, err := store.ChangeInstanceStatus(ctx, st.DB, running, store.StatusDeleted, ""); err != nil {
		t.Fatal(err)
	}
	if n, _ := store.CountLiveInstances(ctx, st.DB, a.ID); n != 0 {
		t.Fatalf("live %d after delete", n)
	}
	if _, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), b.ID, "claw", "iad", store.StatusCreating); err != nil {
		t.Fatalf("reuse of a deleted subdomain: %v", err)
	}
	gone, _ := store.InstanceByID(ctx, st.DB, inst.ID)
	if gone.DeletedAt == nil {
		t.Fatal("deleted_at not set")
	}
}

func TestInstanceLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	instID := id.New(id.Instance)

	held, err := store.InstanceLockHeld(ctx, st.DB, instID)
	if err != nil || held {
		t.Fatalf("held before anyone locked: %v %v", held, err)
	}
	l, ok, err := st.TryLockInstance(ctx, instID)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, _ := st.TryLockInstance(ctx, instID); ok {
		t.Fatal("second lock of the same instance succeeded")
	}
	if held, _ := store.InstanceLockHeld(ctx, st.DB, instID); !held {
		t.Fatal("lock not seen as held")
	}
	other, ok, _ := st.TryLockInstance(ctx, id.New(id.Instance))
	if !ok {
		t.Fatal("another instance's lock was refused")
	}
	other.Release()
	l.Release()
	l2, ok, _ := st.TryLockInstance(ctx, instID)
	if !ok {
		t.Fatal("lock not free after release")
	}
	l2.Release()
}

// TestInstanceLocksLeaveConnectionsForStatements: more runs than the pool
// has connections each hold an instance lock (a connection of its own)
// and then need another connection for a statement, as a worker's runs
// do. The locks take at most half the pool, so every run gets its
// statement and finishes; without that bound the locks took every
// connection and the runs waited on each other until the deadline.
func TestInstanceLocksLeaveConnectionsForStatements(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	st.SetMaxConns(4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var g errgroup.Group
	for range 12 {
		g.Go(func() error {
			lock, ok, err := st.TryLockInstance(ctx, id.New(id.Instance))
			if err != nil || !ok {
				return fmt.Errorf("lock: ok=%v err=%v", ok, err)
			}
			defer lock.Release()
			var one int
			if err := st.DB.QueryRowContext(ctx, `SELECT 1 FROM pg_sleep(0.05)`).Scan(&one); err != nil {
				return fmt.Errorf("a statement while holding the lock: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestInsertCallOperation: a lifecycle call's accept inserts the
// operation and shows the transitional status with its event, in one
// statement; an instance already showing it, or a call with nothing to
// show, gets no event; an unfinished
// delete refuses the call and changes nothing.
func TestInsertCallOperation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "showing@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), a.ID, "showing", "iad", store.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	accept := func(opType, status string) (store.Operation, store.Instance, []store.InstanceEvent, error) {
		t.Helper()
		var op store.Operation
		err := st.WithTx(ctx, func(tx *sqlx.Tx) error {
			locked, err := store.LockInstance(ctx, tx, a.ID, inst.ID)
			if err != nil {
				return err
			}
			op, err = store.InsertCallOperation(ctx, tx, id.New(id.Operation), a.ID, locked, opType, status)
			return err
		})
		now, gerr := store.GetInstance(ctx, st.DB, a.ID, inst.ID)
		if gerr != nil {
			t.Fatal(gerr)
		}
		evs, gerr := store.ListInstanceEvents(ctx, st.DB, a.ID, inst.ID, 0, 10)
		if gerr != nil {
			t.Fatal(gerr)
		}
		return op, now, evs, err
	}

	op, now, evs, err := accept(store.OpRestart, store.StatusRestarting)
	if err != nil {
		t.Fatal(err)
	}
	if op.Status != store.OpPending || op.Type != store.OpRestart || op.InstanceID != inst.ID || op.AccountID != a.ID {
		t.Errorf("operation %+v", op)
	}
	if now.Status != store.StatusRestarting {
		t.Errorf("instance shows %s, want restarting", now.Status)
	}
	if len(evs) != 1 || evs[0].ToStatus != store.StatusRestarting || evs[0].FromStatus == nil || *evs[0].FromStatus != store.StatusRunning ||
		evs[0].OperationID == nil || *evs[0].OperationID != op.ID || evs[0].AccountID != a.ID {
		t.Errorf("events %+v, want one running → restarting caused by %s", evs, op.ID)
	}

	// Already showing restarting: the operation queues, no event.
	if _, now, evs, err = accept(store.OpRestart, store.StatusRestarting); err != nil || now.Status != store.StatusRestarting || len(evs) != 1 {
		t.Errorf("second restart: %v, status %s, %d events", err, now.Status, len(evs))
	}

	// Nothing to show (an instance.configure): the operation queues, no
	// status change, no event.
	if op, now, evs, err = accept(store.OpConfigure, ""); err != nil || op.Type != store.OpConfigure || now.Status != store.StatusRestarting || len(evs) != 1 {
		t.Errorf("configure: %v, %s, status %s, %d events", err, op.Type, now.Status, len(evs))
	}

	// A delete is unfinished: a start is refused and nothing changes.
	if _, _, _, err = accept(store.OpDelete, store.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	_, now, evs, err = accept(store.OpStart, store.StatusStarting)
	if !errors.Is(err, store.ErrInstanceDeleting) || now.Status != store.StatusDeleting || len(evs) != 2 {
		t.Errorf("start behind a delete: %v, status %s, %d events", err, now.Status, len(evs))
	}
}

// TestDeletingOperation: a delete's insert makes it the instance's deleting
// operation (migration 00013's triggers, whatever code wrote it), which
// refuses every other operation until the delete finishes or is
// cancelled; AcceptCallOperation, the one-statement accept, queues nothing
// then (nor on another account's or a deleted instance), and the long way
// tells why.
func TestDeletingOperation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "deleting@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.CreateAccount(ctx, st.DB, "deleting-other@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), a.ID, "deleting", "iad", store.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	accept := func(accountID, opType, showing string) (store.Operation, error) {
		t.Helper()
		var op store.Operation
		err := st.WithTx(ctx, func(tx *sqlx.Tx) (err error) {
			op, err = store.AcceptCallOperation(ctx, tx, id.New(id.Operation), accountID, inst.ID, opType, showing, nil)
			return err
		})
		return op, err
	}
	locked := func() (i store.Instance) {
		t.Helper()
		err := st.WithTx(ctx, func(tx *sqlx.Tx) (err error) {
			i, err = store.LockInstance(ctx, tx, a.ID, inst.ID)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	refused := func(when string) {
		t.Helper()
		if _, err := accept(a.ID, store.OpStart, store.StatusStarting); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: AcceptCallOperation: %v, want nothing queued", when, err)
		}
		err := st.WithTx(ctx, func(tx *sqlx.Tx) error {
			i, err := store.LockInstance(ctx, tx, a.ID, inst.ID)
			if err != nil {
				return err
			}
			if _, err := store.InsertCallOperation(ctx, tx, id.New(id.Operation), a.ID, i, store.OpConfigure, ""); !errors.Is(err, store.ErrInstanceDeleting) {
				t.Errorf("%s: InsertCallOperation: %v, want ErrInstanceDeleting", when, err)
			}
			if _, err := store.InsertTargetOperation(ctx, tx, id.New(id.Operation), a.ID, i, store.OpUpgrade, "1.0.0", "img"); !errors.Is(err, store.ErrInstanceDeleting) {
				t.Errorf("%s: InsertTargetOperation: %v, want ErrInstanceDeleting", when, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	finish := func(op store.Operation, opErr *store.OperationError) {
		t.Helper()
		err := st.WithTx(ctx, func(tx *sqlx.Tx) error {
			_, _, _, err := store.FinishOperation(ctx, tx, op, opErr)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Another account's instance: nothing queued, nothing changed.
	if _, err := accept(other.ID, store.OpRestart, store.StatusRestarting); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account's instance: %v", err)
	}
	// A restart: queued, shown, its event written.
	restart, err := accept(a.ID, store.OpRestart, store.StatusRestarting)
	if err != nil || restart.Type != store.OpRestart || restart.Status != store.OpPending {
		t.Fatalf("restart: %+v %v", restart, err)
	}
	if i := locked(); i.Status != store.StatusRestarting || i.DeletingOperationID != nil {
		t.Errorf("after the restart: %s, deleting %v", i.Status, i.DeletingOperationID)
	}
	evs, err := store.ListInstanceEvents(ctx, st.DB, a.ID, inst.ID, 0, 10)
	if err != nil || len(evs) != 1 || evs[0].FromStatus == nil || *evs[0].FromStatus != store.StatusRunning || evs[0].ToStatus != store.StatusRestarting ||
		evs[0].OperationID == nil || *evs[0].OperationID != restart.ID {
		t.Errorf("events %+v %v, want running → restarting by %s", evs, err, restart.ID)
	}
	finish(restart, nil)

	// A delete, then cancelled: refused while pending, accepted after.
	del, err := accept(a.ID, store.OpDelete, store.StatusDeleting)
	if err != nil {
		t.Fatal(err)
	}
	if i := locked(); i.DeletingOperationID == nil || *i.DeletingOperationID != del.ID || i.Status != store.StatusDeleting {
		t.Fatalf("after the delete: %s, deleting %v, want %s", i.Status, i.DeletingOperationID, del.ID)
	}
	refused("delete pending")
	if _, err := store.CancelOperation(ctx, st.DB, a.ID, del.ID); err != nil {
		t.Fatal(err)
	}
	if i := locked(); i.DeletingOperationID != nil {
		t.Errorf("after the cancel: deleting %v", *i.DeletingOperationID)
	}
	start, err := accept(a.ID, store.OpStart, store.StatusStarting)
	if err != nil {
		t.Fatalf("start after a cancelled delete: %v", err)
	}
	finish(start, nil)

	// A delete that fails: refused while it runs, accepted after.
	del, err = accept(a.ID, store.OpDelete, store.StatusDeleting)
	if err != nil {
		t.Fatal(err)
	}
	refused("the second delete pending")
	finish(del, &store.OperationError{Code: "fly_error", Message: "no"})
	if i := locked(); i.DeletingOperationID != nil {
		t.Errorf("after the failed delete: deleting %v", *i.DeletingOperationID)
	}
	if _, err := accept(a.ID, store.OpStart, store.StatusStarting); err != nil {
		t.Fatalf("start after a failed delete: %v", err)
	}

	// A delete written as an api replica from before migration 00013
	// writes it (a plain insert, a plain status update): its triggers keep
	// the instance's deleting operation all the same.
	old, err := store.InsertOperation(ctx, st.DB, id.New(id.Operation), a.ID, inst.ID, store.OpDelete)
	if err != nil {
		t.Fatal(err)
	}
	refused("a delete inserted by older code")
	if _, err := st.DB.ExecContext(ctx, `UPDATE operations SET status = 'failed', finished_at = now() WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	if i := locked(); i.DeletingOperationID != nil {
		t.Errorf("after older code failed the delete: deleting %v", *i.DeletingOperationID)
	}

	// A deleted instance: nothing queued.
	if _, err := st.DB.ExecContext(ctx, `UPDATE instances SET status = 'deleted' WHERE id = $1`, inst.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := accept(a.ID, store.OpStart, store.StatusStarting); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted instance: %v, want nothing queued", err)
	}
}

// FinishSeen writes a run's end in one statement only while neither row
// has moved since the start saw it, and what it writes is exactly what
// the operation and the instance, rendered beforehand, said it would be;
// StartSeen, the start of the run handed over next, likewise.
func TestFinishSeen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "seen@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.InsertWebhookEndpoint(ctx, st.DB, store.WebhookEndpoint{ID: id.New(id.Webhook), AccountID: a.ID,
		URL: "https://example.com/hook", Events: pq.StringArray{"operation.succeeded"}, SecretSealed: []byte{0}}); err != nil {
		t.Fatal(err)
	}
	inst, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), a.ID, "seen", "iad", store.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	accept := func(opType, showing string) store.Operation {
		t.Helper()
		var op store.Operation
		err := st.WithTx(ctx, func(tx *sqlx.Tx) (err error) {
			op, err = store.AcceptCallOperation(ctx, tx, id.New(id.Operation), a.ID, inst.ID, opType, showing, nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return op
	}
	start := func(op store.Operation) (store.Operation, store.Instance, store.Seen) {
		t.Helper()
		started, on, seen, err := store.StartShowingOperation(ctx, st.DB, op, "")
		if err != nil || !seen.Saw() {
			t.Fatalf("start %s: %v (saw both rows: %v)", op.ID, err, seen.Saw())
		}
		return started, on, seen
	}
	// The end of op on the instance on, moving it to status, as the
	// worker renders it: the operation and the instance as they will be.
	end := func(op store.Operation, on store.Instance, seen store.Seen, status string) (store.Operation, store.Rendered) {
		done := op.Ended(nil, seen.Now())
		r := store.Rendered{Instance: on.WithStatus(status, *done.FinishedAt), StatusChangeID: id.New(id.Event),
			Events: []store.QueuedEvent{{ID: id.New(id.Event), Type: "operation.succeeded", Payload: []byte(`{"n":1}`)}}}
		return done, r
	}
	unchanged := func(when string, op store.Operation, status string) {
		t.Helper()
		if row, _ := store.OperationByID(ctx, st.DB, op.ID); row.Status != store.OpRunning || row.FinishedAt != nil {
			t.Errorf("%s: the operation changed: %+v", when, row)
		}
		if i, _ := store.InstanceByID(ctx, st.DB, inst.ID); i.Status != status {
			t.Errorf("%s: the instance shows %s, want %s", when, i.Status, status)
		}
	}
	rendered := func(what string, r store.Rendered) {
		t.Helper()
		now, err := store.InstanceByID(ctx, st.DB, inst.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := wire.NewInstance(now, ""), wire.NewInstance(r.Instance, ""); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the instance is\n%+v\nwhere its rendering said\n%+v", what, got, want)
		}
		evs, err := store.ListInstanceEvents(ctx, st.DB, a.ID, inst.ID, 0, 1)
		if err != nil || len(evs) != 1 || evs[0].ID != r.StatusChangeID || evs[0].ToStatus != r.Instance.Status {
			t.Errorf("%s: the status change's event: %+v %v", what, evs, err)
		}
	}

	restart := accept(store.OpRestart, store.StatusRestarting)
	stop := accept(store.OpStop, store.StatusStopping) // queued behind it
	started, on, seen := start(restart)
	if on.Status != store.StatusStopping {
		t.Fatalf("the instance shows %s, want the last accept's stopping", on.Status)
	}
	if seen.Now().Before(*started.StartedAt) {
		t.Errorf("the database's clock %v runs behind the start's %v", seen.Now(), *started.StartedAt)
	}

	// A step of the run recorded something on the instance: nothing
	// written, the long way's turn.
	if err := store.SetInstanceFly(ctx, st.DB, inst.ID, "app-seen", "m-seen"); err != nil {
		t.Fatal(err)
	}
	done, r := end(started, on, seen, store.StatusRunning)
	if _, _, _, err := store.FinishSeen(ctx, st.DB, done, seen, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the instance changed since the start: %v, want ErrNotFound", err)
	}
	unchanged("instance changed", started, store.StatusStopping)
	// So did an accept that showed another status.
	started, on, seen = start(started)
	accept(store.OpStart, store.StatusStarting)
	done, r = end(started, on, seen, store.StatusRunning)
	if _, _, _, err := store.FinishSeen(ctx, st.DB, done, seen, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an accept changed the instance since the start: %v, want ErrNotFound", err)
	}
	unchanged("accepted meanwhile", started, store.StatusStarting)

	// Nothing moved: one statement writes the end, the status change and
	// the events, exactly as rendered.
	started, on, seen = start(started)
	done, r = end(started, on, seen, store.StatusRunning)
	next, deliveries, after, err := store.FinishSeen(ctx, st.DB, done, seen, r)
	if err != nil || next != stop.ID || len(deliveries) != 1 {
		t.Fatalf("FinishSeen: next %q (want %s), deliveries %v: %v", next, stop.ID, deliveries, err)
	}
	row, err := store.OperationByID(ctx, st.DB, started.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := wire.NewOperation(row), wire.NewOperation(done); !reflect.DeepEqual(got, want) {
		t.Errorf("the operation is\n%+v\nwhere its rendering said\n%+v", got, want)
	}
	rendered("FinishSeen", r)
	if evs, _ := store.ListInstanceEvents(ctx, st.DB, a.ID, inst.ID, 0, 1); len(evs) == 1 &&
		(evs[0].FromStatus == nil || *evs[0].FromStatus != store.StatusStarting || evs[0].OperationID == nil || *evs[0].OperationID != started.ID) {
		t.Errorf("the status change's event: %+v", evs[0])
	}
	feed, err := store.ListFeedEvents(ctx, st.DB, a.ID, nil, nil, 100)
	if err != nil || len(feed) == 0 || feed[len(feed)-1].ID != r.Events[0].ID {
		t.Errorf("the feed does not end with the operation's event: %+v %v", feed, err)
	}
	// Done once: the same end again changes nothing.
	if _, _, _, err := store.FinishSeen(ctx, st.DB, done, seen, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("finishing twice: %v", err)
	}

	// The run handed over next starts on the row as the finish left it,
	// in one statement too, unless the account's plan has changed since.
	if _, err := st.DB.ExecContext(ctx, `UPDATE accounts SET plan = 'business' WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	sr := store.Rendered{Instance: r.Instance.WithStatus(store.StatusStopping, after.Now()), StatusChangeID: id.New(id.Event)}
	if _, _, _, err := store.StartSeen(ctx, st.DB, stop, after, sr); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("StartSeen after a plan change: %v, want ErrNotFound", err)
	}
	if row, _ := store.OperationByID(ctx, st.DB, stop.ID); row.Status != store.OpPending {
		t.Fatalf("a start that did not happen changed the operation: %+v", row)
	}
	if _, err := st.DB.ExecContext(ctx, `UPDATE accounts SET plan = 'pro' WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	stopping, seen, deliveries, err := store.StartSeen(ctx, st.DB, stop, after, sr)
	if err != nil || stopping.Status != store.OpRunning || stopping.Attempts != 1 || stopping.StartedAt == nil || len(deliveries) != 0 {
		t.Fatalf("StartSeen: %+v, deliveries %v: %v", stopping, deliveries, err)
	}
	rendered("StartSeen", sr)

	// A step recorded something on the operation: nothing written.
	if _, err := store.SetOperationFromState(ctx, st.DB, stopping.ID, "started"); err != nil {
		t.Fatal(err)
	}
	done, r = end(stopping, sr.Instance, seen, store.StatusStopped)
	if _, _, _, err := store.FinishSeen(ctx, st.DB, done, seen, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the operation changed since the start: %v, want ErrNotFound", err)
	}
	unchanged("operation changed", stopping, store.StatusStopping)
	// A start that saw nothing: FinishSeen does not try.
	if _, _, _, err := store.FinishSeen(ctx, st.DB, done, store.Seen{}, r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("with nothing seen: %v, want ErrNotFound", err)
	}

	// The long way's start (its transaction changes the status) sees the
	// rows as it leaves them.
	var on2 store.Instance
	err = st.WithTx(ctx, func(tx *sqlx.Tx) error {
		i, err := store.LockInstance(ctx, tx, a.ID, inst.ID)
		if err != nil {
			return err
		}
		if stopping, err = store.StartOperation(ctx, tx, stopping.ID); err != nil {
			return err
		}
		if on2, _, err = store.ChangeInstanceStatus(ctx, tx, i, store.StatusRestarting, stopping.ID); err != nil {
			return err
		}
		seen, err = store.SeeStarted(ctx, tx, stopping)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done, r = end(stopping, on2, seen, store.StatusStopped)
	if _, _, _, err := store.FinishSeen(ctx, st.DB, done, seen, r); err != nil {
		t.Fatalf("after the long way's start: %v", err)
	}
	rendered("FinishSeen after the long way's start", r)
}

// TestTryLockStarting: the statement that takes an instance's lock starts
// the operation exactly when OperationToRun's checks and
// StartShowingOperation would both let it, changes nothing otherwise
// (keeping the lock it took), takes nothing while another session holds
// the lock, and answers the operation (with its trace context), the
// instance and what it saw.
func TestTryLockStarting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "start-by-id@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), a.ID, "start-by-id", "iad", store.StatusRestarting)
	if err != nil {
		t.Fatal(err)
	}
	showing := map[string]string{store.OpRestart: store.StatusRestarting, store.OpStop: store.StatusStopping}
	var ops []store.Operation
	for _, typ := range []string{store.OpRestart, store.OpRestart, store.OpConfigure} {
		op, err := store.InsertOperation(ctx, st.DB, id.New(id.Operation), a.ID, inst.ID, typ)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := st.DB.ExecContext(ctx, `UPDATE operations SET traceparent = $1 WHERE id = $2`, tp, ops[0].ID); err != nil {
		t.Fatal(err)
	}
	held := func(want bool) {
		t.Helper()
		if h, err := store.InstanceLockHeld(ctx, st.DB, inst.ID); err != nil || h != want {
			t.Fatalf("instance lock held: %v (%v), want %v", h, err, want)
		}
	}
	start := func(instanceID, opID string) *store.Started {
		t.Helper()
		lock, started, err := st.TryLockStarting(ctx, instanceID, opID, showing)
		if err != nil || lock == nil {
			t.Fatalf("lock %s and start %s: lock %v, %v", instanceID, opID, lock, err)
		}
		defer lock.Release()
		if instanceID == inst.ID {
			held(true) // whether or not anything started
		}
		return started
	}
	refused := func(why string, op store.Operation) {
		t.Helper()
		before, err := store.OperationByID(ctx, st.DB, op.ID)
		if err != nil {
			t.Fatal(err)
		}
		if started := start(inst.ID, op.ID); started != nil {
			t.Fatalf("%s: started %+v", why, started.Op)
		}
		if after, _ := store.OperationByID(ctx, st.DB, op.ID); after.Status != before.Status || after.Attempts != before.Attempts {
			t.Fatalf("%s: the operation changed from %+v to %+v", why, before, after)
		}
	}

	refused("an earlier operation has not finished", ops[1])
	if started := start(inst.ID, id.New(id.Operation)); started != nil {
		t.Fatalf("no such operation: started %+v", started.Op)
	}
	other := id.New(id.Instance)
	if started := start(other, ops[0].ID); started != nil {
		t.Fatalf("locked another instance and started %+v", started.Op)
	}
	held(false)
	// Another session holds the lock: nothing is taken, nothing starts.
	lock, ok, err := st.TryLockInstance(ctx, inst.ID)
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	if l, started, err := st.TryLockStarting(ctx, inst.ID, ops[0].ID, showing); err != nil || l != nil || started != nil {
		t.Fatalf("while another holds the lock: lock %v, started %v, %v", l, started, err)
	}
	lock.Release()
	if op, _ := store.OperationByID(ctx, st.DB, ops[0].ID); op.Status != store.OpPending {
		t.Fatalf("started without the lock: %+v", op)
	}

	started := start(inst.ID, ops[0].ID)
	if started == nil || started.Op.ID != ops[0].ID || started.Op.Status != store.OpRunning || started.Op.Attempts != 1 || started.Op.StartedAt == nil {
		t.Fatalf("start: %+v", started)
	}
	held(false)
	if started.Op.Traceparent == nil || *started.Op.Traceparent != tp {
		t.Errorf("start answered traceparent %v, want %s", started.Op.Traceparent, tp)
	}
	if on := started.Instance; on.ID != inst.ID || on.Status != store.StatusRestarting || on.Plan != "pro" || !started.Seen.Saw() {
		t.Errorf("start answered the instance %+v (seen %+v)", on, started.Seen)
	}
	// A run that died is started again, one attempt more.
	if again := start(inst.ID, ops[0].ID); again == nil || again.Op.Attempts != 2 || !again.Op.StartedAt.Equal(*started.Op.StartedAt) {
		t.Fatalf("second start: %+v", again)
	}
	if _, _, _, err := store.FinishOperation(ctx, st.DB, started.Op, nil); err != nil {
		t.Fatal(err)
	}
	refused("a finished operation", ops[0])
	// The instance no longer shows what a restart shows.
	if _, err := st.DB.ExecContext(ctx, `UPDATE instances SET status = 'running' WHERE id = $1`, inst.ID); err != nil {
		t.Fatal(err)
	}
	refused("the instance shows another status", ops[1])
	if _, err := store.StartOperation(ctx, st.DB, ops[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := store.FinishOperation(ctx, st.DB, ops[1], nil); err != nil {
		t.Fatal(err)
	}
	// A type that shows no status starts whatever the instance shows.
	if cfg := start(inst.ID, ops[2].ID); cfg == nil || cfg.Op.Status != store.OpRunning || cfg.Instance.Status != store.StatusRunning {
		t.Fatalf("configure: %+v", cfg)
	}
}

// TestTryLockStartByIDChecksLatestRows: the statement's snapshot is taken
// before its try-lock, so what another run commits in between is not in
// it; the start must still act on the rows as they are. A second session
// holds a change to the operation's row (its finish) or to the
// instance's (another status), uncommitted, while the statement waits on
// that row after its snapshot; then the change commits. The statement
// must start nothing: Postgres checks the UPDATE's and the row lock's
// conditions again on the row's latest version (EvalPlanQual), which is
// also what happens when such a change committed before the statement
// reached the row.
func TestTryLockStartByIDChecksLatestRows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "latest-rows@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	showing := map[string]string{store.OpRestart: store.StatusRestarting}
	for n, c := range []struct{ name, change string }{
		{"the operation finished", `UPDATE operations SET status = 'succeeded', finished_at = now() WHERE instance_id = $1`},
		{"the instance shows another status", `UPDATE instances SET status = 'running' WHERE id = $1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			inst, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), a.ID, fmt.Sprintf("latest-%d", n), "iad", store.StatusRestarting)
			if err != nil {
				t.Fatal(err)
			}
			op, err := store.InsertOperation(ctx, st.DB, id.New(id.Operation), a.ID, inst.ID, store.OpRestart)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := st.DB.BeginTxx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, c.change, inst.ID); err != nil {
				t.Fatal(err)
			}
			type result struct {
				lock    *store.InstanceLock
				started *store.Started
				err     error
			}
			done := make(chan result, 1)
			go func() {
				lock, started, err := st.TryLockStarting(ctx, inst.ID, op.ID, showing)
				done <- result{lock, started, err}
			}()
			// The statement waits on the row the transaction changed.
			for waiting := false; !waiting; {
				if err := st.DB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%pg_try_advisory_lock%')`).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				select {
				case r := <-done:
					t.Fatalf("the statement did not wait on the changed row: lock %v, started %v, %v", r.lock, r.started, r.err)
				case <-time.After(5 * time.Millisecond):
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil || r.lock == nil {
				t.Fatalf("lock %v, %v", r.lock, r.err)
			}
			r.lock.Release()
			if r.started != nil {
				t.Fatalf("started on a row its snapshot saw, not the latest: %+v on %+v", r.started.Op, r.started.Instance)
			}
			after, err := store.OperationByID(ctx, st.DB, op.ID)
			if err != nil || after.Attempts != 0 {
				t.Fatalf("the operation changed: %+v %v", after, err)
			}
		})
	}
}
