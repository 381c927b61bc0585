package notify_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/testenv"
)

// hub starts a hub on a fresh database and waits until it listens.
func hub(t *testing.T, channels ...string) (*notify.Hub, *sql.DB) {
	t.Helper()
	dsn := testenv.DatabaseURL(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := notify.New(dsn, channels, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-h.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("hub never became ready")
	}
	return h, db
}

// woken reports whether s is woken within d.
func woken(s *notify.Subscription, d time.Duration) bool {
	select {
	case <-s.C():
		return true
	case <-time.After(d):
		return false
	}
}

// drain empties a pending wake-up (the one every subscription made before
// readiness gets).
func drain(s *notify.Subscription) {
	select {
	case <-s.C():
	default:
	}
}

func TestHubDeliversCommittedNotificationsToMatchingSubscriptions(t *testing.T) {
	t.Parallel()
	h, db := hub(t, "ch_a", "ch_b")
	ctx := context.Background()
	one := h.Subscribe("ch_a", "one")
	defer one.Close()
	two := h.Subscribe("ch_a", "two")
	defer two.Close()
	any := h.Subscribe("ch_a", "")
	defer any.Close()
	other := h.Subscribe("ch_b", "one")
	defer other.Close()

	t.Run("a rolled back NOTIFY wakes nobody", func(t *testing.T) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify('ch_a', 'one')`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		// A committed notification after it proves the listener is live,
		// and that the rolled-back one never arrived before it.
		if _, err := db.ExecContext(ctx, `SELECT pg_notify('ch_a', 'two')`); err != nil {
			t.Fatal(err)
		}
		if !woken(two, 10*time.Second) {
			t.Fatal("committed notification did not arrive")
		}
		if woken(one, 0) {
			t.Fatal("a rolled-back NOTIFY woke its subscriber")
		}
		drain(any)
	})

	t.Run("the key and channel select the subscribers", func(t *testing.T) {
		if _, err := db.ExecContext(ctx, `SELECT pg_notify('ch_a', 'one')`); err != nil {
			t.Fatal(err)
		}
		if !woken(one, 10*time.Second) {
			t.Fatal("subscriber of ch_a/one not woken")
		}
		if !woken(any, 10*time.Second) {
			t.Fatal("subscriber of all of ch_a not woken")
		}
		if woken(two, 0) || woken(other, 0) {
			t.Fatal("a subscriber of another key or channel was woken")
		}
	})

	t.Run("a closed subscription is forgotten", func(t *testing.T) {
		before := h.Stats().Subscribers
		s := h.Subscribe("ch_a", "gone")
		if got := h.Stats().Subscribers; got != before+1 {
			t.Fatalf("subscribers = %d, want %d", got, before+1)
		}
		s.Close()
		s.Close()
		if got := h.Stats().Subscribers; got != before {
			t.Fatalf("after close: subscribers = %d, want %d", got, before)
		}
	})
}

// TestHubWakesEveryoneAfterReconnecting kills the listening connection:
// what was sent while it was down is lost, so every subscription must be
// woken once the hub listens again, and later notifications still arrive.
func TestHubWakesEveryoneAfterReconnecting(t *testing.T) {
	t.Parallel()
	h, db := hub(t, "ch_r")
	ctx := context.Background()
	s := h.Subscribe("ch_r", "k")
	defer s.Close()
	drain(s)

	res, err := db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, notify.ApplicationName)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("terminated %d listening connections, want exactly 1 (one per hub)", n)
	}
	if !woken(s, 20*time.Second) {
		t.Fatal("not woken after the listener reconnected")
	}
	// Listening again: a new notification arrives (retry until the
	// reconnection has re-issued LISTEN).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := db.ExecContext(ctx, `SELECT pg_notify('ch_r', 'k')`); err != nil {
			t.Fatal(err)
		}
		if woken(s, 200*time.Millisecond) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no notification after reconnecting")
		}
	}
}

// TestWatchPayloads checks that a watcher gets each committed
// notification's payload, and none of a rolled-back transaction.
func TestWatchPayloads(t *testing.T) {
	h, db := hub(t, "mocd_test_watch")
	got := make(chan string, 10)
	stop := h.Watch("mocd_test_watch", func(p string) {
		if p != "" {
			got <- p
		}
	})
	defer stop()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT pg_notify('mocd_test_watch', 'rolled-back')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`SELECT pg_notify('mocd_test_watch', 'op_1')`); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "op_1" {
			t.Fatalf("payload = %q, want op_1 (the rolled-back one must never arrive)", p)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no payload delivered")
	}
	stop()
	if _, err := db.Exec(`SELECT pg_notify('mocd_test_watch', 'op_2')`); err != nil {
		t.Fatal(err)
	}
	// A second, watched channel message proves op_2 was dispatched
	// (notifications arrive in order) without reaching the stopped watcher.
	s := h.Subscribe("mocd_test_watch", "op_3")
	defer s.Close()
	drain(s)
	if _, err := db.Exec(`SELECT pg_notify('mocd_test_watch', 'op_3')`); err != nil {
		t.Fatal(err)
	}
	if !woken(s, 30*time.Second) {
		t.Fatal("op_3 never arrived")
	}
	select {
	case p := <-got:
		t.Fatalf("stopped watcher got %q", p)
	default:
	}
}
