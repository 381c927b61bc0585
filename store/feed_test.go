package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

func TestFeedEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "feed@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.CreateAccount(ctx, st.DB, "feed-other@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	queue := func(accountID, typ string) {
		t.Helper()
		if _, err := store.QueueWebhookEvent(ctx, st.DB, accountID, id.New(id.Event), typ, []byte(`{"type":"`+typ+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	queue(a.ID, "operation.succeeded")
	queue(b.ID, "operation.succeeded")
	queue(a.ID, "instance.status_changed")
	queue(a.ID, "operation.failed")

	all, err := store.ListFeedEvents(ctx, st.DB, a.ID, nil, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Type != "operation.succeeded" || all[2].Type != "operation.failed" {
		t.Fatalf("feed of a = %+v, want its 3 events oldest first", all)
	}
	for i, e := range all {
		if e.AccountID != a.ID {
			t.Fatalf("event %d of another account: %+v", i, e)
		}
		if i > 0 && e.Seq <= all[i-1].Seq {
			t.Fatalf("not oldest first: %+v", all)
		}
	}
	t.Run("after and limit page forward", func(t *testing.T) {
		got, err := store.ListFeedEvents(ctx, st.DB, a.ID, &all[0].Seq, nil, 1)
		if err != nil || len(got) != 1 || got[0].Seq != all[1].Seq {
			t.Fatalf("after first, limit 1 = %+v, %v", got, err)
		}
	})
	t.Run("types filter", func(t *testing.T) {
		got, err := store.ListFeedEvents(ctx, st.DB, a.ID, nil, []string{"operation.failed", "operation.succeeded"}, 10)
		if err != nil || len(got) != 2 || got[1].Type != "operation.failed" {
			t.Fatalf("types = %+v, %v", got, err)
		}
	})
	t.Run("head", func(t *testing.T) {
		head, err := store.FeedHead(ctx, st.DB, a.ID)
		if err != nil || head != all[2].Seq {
			t.Fatalf("head = %d, %v; want %d", head, err, all[2].Seq)
		}
	})
	t.Run("pruning expires cursors below what it deleted", func(t *testing.T) {
		if _, err := st.DB.ExecContext(ctx, `UPDATE events SET created_at = now() - interval '100 days' WHERE seq <= $1`, all[1].Seq); err != nil {
			t.Fatal(err)
		}
		n, err := store.PruneEvents(ctx, st.DB, time.Now().Add(-90*24*time.Hour), 1000)
		if err != nil || n != 3 { // a's first two and b's one
			t.Fatalf("pruned %d, %v; want 3", n, err)
		}
		if _, err := store.ListFeedEvents(ctx, st.DB, a.ID, &all[0].Seq, nil, 10); !errors.Is(err, store.ErrCursorExpired) {
			t.Fatalf("cursor below the pruned horizon: err = %v, want ErrCursorExpired", err)
		}
		got, err := store.ListFeedEvents(ctx, st.DB, a.ID, &all[1].Seq, nil, 10)
		if err != nil || len(got) != 1 || got[0].Seq != all[2].Seq {
			t.Fatalf("cursor at the horizon = %+v, %v", got, err)
		}
		got, err = store.ListFeedEvents(ctx, st.DB, a.ID, nil, nil, 10)
		if err != nil || len(got) != 1 || got[0].Seq != all[2].Seq {
			t.Fatalf("no cursor after pruning = %+v, %v; want the oldest kept", got, err)
		}
		// b's only event is gone: its head is past it, and a stream
		// starting there is not expired.
		head, err := store.FeedHead(ctx, st.DB, b.ID)
		if err != nil || head <= all[0].Seq {
			t.Fatalf("head of b after pruning = %d, %v", head, err)
		}
		if _, err := store.ListFeedEvents(ctx, st.DB, b.ID, &head, nil, 10); err != nil {
			t.Fatalf("from b's head: %v", err)
		}
		// Another account's cursor, below what was pruned elsewhere, is not
		// expired: nothing of its own was pruned.
		c, err := store.CreateAccount(ctx, st.DB, "feed-idle@example.com", "pro")
		if err != nil {
			t.Fatal(err)
		}
		zero := int64(0)
		if _, err := store.ListFeedEvents(ctx, st.DB, c.ID, &zero, nil, 10); err != nil {
			t.Fatalf("an idle account's cursor 0: %v", err)
		}
	})
}

// TestFeedSeqIsCommitOrderWithinAnAccount holds one account's event
// transaction open: a second writer of the same account waits for its
// commit (so it cannot commit a higher seq first, which a reader could
// otherwise see before the lower one and skip it), while another account's
// writer does not wait.
func TestFeedSeqIsCommitOrderWithinAnAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "order@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.CreateAccount(ctx, st.DB, "order-other@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.DB.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback()
	if _, err := store.QueueWebhookEvent(ctx, first, a.ID, id.New(id.Event), "operation.succeeded", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	// Another account: not blocked.
	if err := st.WithTx(ctx, func(tx *sqlx.Tx) error {
		_, err := store.QueueWebhookEvent(ctx, tx, b.ID, id.New(id.Event), "operation.succeeded", []byte(`{}`))
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// The same account: blocked until first commits.
	second := make(chan error, 1)
	go func() {
		second <- st.WithTx(ctx, func(tx *sqlx.Tx) error {
			_, err := store.QueueWebhookEvent(ctx, tx, a.ID, id.New(id.Event), "operation.failed", []byte(`{}`))
			return err
		})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		if err := st.DB.GetContext(ctx, &waiting, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-second:
			t.Fatalf("second writer of the account finished while the first was open (err %v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("second writer never waited on the account's lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	got, err := store.ListFeedEvents(ctx, st.DB, a.ID, nil, nil, 10)
	if err != nil || len(got) != 2 || got[0].Type != "operation.succeeded" || got[1].Type != "operation.failed" {
		t.Fatalf("feed = %+v, %v; want commit order", got, err)
	}
}

func TestCancelOperation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "cancel@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := store.InsertInstance(ctx, st.DB, id.New(id.Instance), a.ID, "cancel-me", "iad", store.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	op, err := store.InsertOperation(ctx, st.DB, id.New(id.Operation), a.ID, inst.ID, store.OpStop)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CancelOperation(ctx, st.DB, "acct_other", op.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account cancels: %v", err)
	}
	got, err := store.CancelOperation(ctx, st.DB, a.ID, op.ID)
	if err != nil || got.Status != store.OpCancelled || got.FinishedAt == nil || got.StartedAt != nil || !got.Terminal() {
		t.Fatalf("cancel = %+v, %v", got, err)
	}
	if _, err := store.CancelOperation(ctx, st.DB, a.ID, op.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, err := store.StartOperation(ctx, st.DB, op.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a cancelled operation started: %v", err)
	}
	list, err := store.ListOperations(ctx, st.DB, a.ID, store.OperationFilter{Status: store.OpCancelled, Type: store.OpStop}, 0, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("filter cancelled stops = %+v, %v", list, err)
	}
	list, err = store.ListOperations(ctx, st.DB, a.ID, store.OperationFilter{CreatedBefore: op.CreatedAt}, 0, 10)
	if err != nil || len(list) != 0 {
		t.Fatalf("created_before its own creation = %+v, %v", list, err)
	}
	list, err = store.ListOperations(ctx, st.DB, a.ID, store.OperationFilter{CreatedAfter: op.CreatedAt}, 0, 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("created_after (inclusive) its own creation = %+v, %v", list, err)
	}
}

// TestQueueWebhookEventsKeepsTheirOrder: events queued together (an
// operation's finish: the instance's status, then the operation) enter
// the feed in the order given, and each reaches every endpoint subscribed
// to its type, deliveries answered event by event.
func TestQueueWebhookEventsKeepsTheirOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.Store(t)
	a, err := store.CreateAccount(ctx, st.DB, "together@example.com", "pro")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := func(events ...string) string {
		t.Helper()
		e, err := store.InsertWebhookEndpoint(ctx, st.DB, store.WebhookEndpoint{
			ID: id.New(id.Webhook), AccountID: a.ID, URL: "https://hooks.example.com/" + id.Random(6), Events: events, SecretSealed: []byte("sealed"),
		})
		if err != nil {
			t.Fatal(err)
		}
		return e.ID
	}
	both := endpoint("instance.status_changed", "operation.succeeded")
	statusOnly := endpoint("instance.status_changed")
	endpoint("operation.failed") // subscribed to neither

	status, done := id.New(id.Event), id.New(id.Event)
	got, err := store.QueueWebhookEvents(ctx, st.DB, a.ID,
		store.QueuedEvent{ID: status, Type: "instance.status_changed", Payload: []byte(`{"n":1}`)},
		store.QueuedEvent{ID: done, Type: "operation.succeeded", Payload: []byte(`{"n":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	first, second := []string{id.Delivery + "_" + status + "_" + both, id.Delivery + "_" + status + "_" + statusOnly}, id.Delivery+"_"+done+"_"+both
	if first[0] > first[1] {
		first[0], first[1] = first[1], first[0] // one event's deliveries go by endpoint id
	}
	if want := append(first, second); !slices.Equal(got, want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	feed, err := store.ListFeedEvents(ctx, st.DB, a.ID, nil, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(feed) != 2 || feed[0].ID != status || feed[1].ID != done {
		t.Errorf("feed %+v, want the status change, then the operation", feed)
	}
	d, err := store.WebhookDeliveryByID(ctx, st.DB, second)
	if err != nil || d.EventID != done || d.EventType != "operation.succeeded" || d.EndpointID != both || string(d.Payload) != `{"n":2}` {
		t.Errorf("delivery %+v, %v", d, err)
	}
}
