package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/testenv"
)

// ts parses "2025-03-10 10:00" (or with seconds) as UTC.
func ts(t testing.TB, s string) time.Time {
	t.Helper()
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02 15:04:05"} {
		if v, err := time.Parse(layout, s); err == nil {
			return v
		}
	}
	t.Fatalf("bad time %q", s)
	return time.Time{}
}

// ev is one status change of a test instance at a chosen time.
type ev struct {
	at, to string
}

// seedInstance inserts an instance of account whose status history is
// events, with the timestamps given; deletedAt ("" for none) is stamped as
// the worker does when the instance is deleted.
func seedInstance(t testing.TB, db sqlx.ExtContext, accountID, name string, events []ev, deletedAt string) string {
	t.Helper()
	ctx := context.Background()
	instID := id.New(id.Instance)
	if _, err := store.InsertInstance(ctx, db, instID, accountID, strings.ToLower(name)+"-"+strings.ToLower(id.Random(8)), "iad", store.StatusCreating); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE instances SET created_at = $2 WHERE id = $1`, instID, ts(t, events[0].at)); err != nil {
		t.Fatal(err)
	}
	if deletedAt != "" {
		if _, err := db.ExecContext(ctx, `UPDATE instances SET status = 'deleted', deleted_at = $2 WHERE id = $1`, instID, ts(t, deletedAt)); err != nil {
			t.Fatal(err)
		}
	}
	from := ""
	for _, e := range events {
		const q = `INSERT INTO instance_events (id, account_id, instance_id, from_status, to_status, created_at)
			VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6)`
		if _, err := db.ExecContext(ctx, q, id.New(id.Event), accountID, instID, from, e.to, ts(t, e.at)); err != nil {
			t.Fatal(err)
		}
		from = e.to
	}
	return instID
}

// TestRunningByDay pins the instance-hours arithmetic: time in "running"
// between an event and the next (or now), split exactly at UTC midnight,
// against hand-computed figures.
func TestRunningByDay(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	ctx := context.Background()

	type want map[string]map[string]float64 // day → instance name → hours
	cases := []struct {
		name      string
		instances map[string][]ev // name → events
		deleted   map[string]string
		from      string // first day of the range
		days      int
		now       string
		timeZone  string // the session's time zone; default the server's
		want      want
	}{{
		name: "10:00 to 12:30 is 2.5 hours",
		instances: map[string][]ev{"a": {
			{"2025-03-10 09:55", "creating"}, {"2025-03-10 10:00", "running"}, {"2025-03-10 12:30", "stopped"}}},
		from: "2025-03-10", days: 3, now: "2025-03-12 23:00",
		want: want{"2025-03-10": {"a": 2.5}},
	}, {
		name:      "split at midnight",
		instances: map[string][]ev{"a": {{"2025-03-10 22:00", "running"}, {"2025-03-11 03:00", "stopped"}}},
		from:      "2025-03-10", days: 3, now: "2025-03-12 23:00",
		want: want{"2025-03-10": {"a": 2}, "2025-03-11": {"a": 3}},
	}, {
		name:      "a whole day in the middle",
		instances: map[string][]ev{"a": {{"2025-03-10 20:00", "running"}, {"2025-03-12 04:00", "stopping"}, {"2025-03-12 04:01", "stopped"}}},
		from:      "2025-03-10", days: 3, now: "2025-03-12 23:00",
		want: want{"2025-03-10": {"a": 4}, "2025-03-11": {"a": 24}, "2025-03-12": {"a": 4}},
	}, {
		name:      "still running counts up to now",
		instances: map[string][]ev{"a": {{"2025-03-11 18:00", "running"}}},
		from:      "2025-03-10", days: 5, now: "2025-03-12 06:30",
		want: want{"2025-03-11": {"a": 6}, "2025-03-12": {"a": 6.5}},
	}, {
		name:      "running before the range: only the part inside counts",
		instances: map[string][]ev{"a": {{"2025-03-10 20:00", "running"}, {"2025-03-11 02:00", "stopped"}}},
		from:      "2025-03-11", days: 2, now: "2025-03-12 23:00",
		want: want{"2025-03-11": {"a": 2}},
	}, {
		name:      "running through the whole range, no event inside it",
		instances: map[string][]ev{"a": {{"2025-03-01 12:00", "running"}}},
		from:      "2025-03-11", days: 1, now: "2025-03-20 12:00",
		want: want{"2025-03-11": {"a": 24}},
	}, {
		name:      "the range ends before the stop",
		instances: map[string][]ev{"a": {{"2025-03-10 23:00", "running"}, {"2025-03-11 01:00", "stopped"}}},
		from:      "2025-03-10", days: 1, now: "2025-03-12 23:00",
		want: want{"2025-03-10": {"a": 1}},
	}, {
		name: "restarting, stopping and deleting are not running",
		instances: map[string][]ev{"a": {
			{"2025-03-10 10:00", "running"}, {"2025-03-10 11:00", "restarting"}, {"2025-03-10 11:05", "running"},
			{"2025-03-10 12:00", "stopped"}, {"2025-03-10 13:00", "running"}, {"2025-03-10 13:30", "deleting"},
			{"2025-03-10 13:31", "deleted"}}},
		from: "2025-03-10", days: 2, now: "2025-03-12 23:00",
		// 1 h + 55 min + 30 min = 8700 s
		want: want{"2025-03-10": {"a": 8700.0 / 3600}},
	}, {
		name: "events of one transaction share a timestamp",
		instances: map[string][]ev{"a": {
			{"2025-03-10 10:00", "creating"}, {"2025-03-10 10:00", "starting"}, {"2025-03-10 10:00", "running"},
			{"2025-03-10 11:00:30", "stopped"}}},
		from: "2025-03-10", days: 1, now: "2025-03-12 23:00",
		want: want{"2025-03-10": {"a": 3630.0 / 3600}},
	}, {
		name: "two instances; a span ending exactly at midnight adds nothing to the next day",
		instances: map[string][]ev{
			"a": {{"2025-03-10 00:00", "running"}, {"2025-03-10 06:00", "stopped"}},
			"b": {{"2025-03-10 12:00", "running"}, {"2025-03-11 00:00", "stopped"}}},
		from: "2025-03-10", days: 2, now: "2025-03-12 23:00",
		want: want{"2025-03-10": {"a": 6, "b": 12}},
	}, {
		name: "an instance deleted before the range",
		instances: map[string][]ev{"a": {
			{"2025-03-10 10:00", "running"}, {"2025-03-10 11:00", "deleting"}, {"2025-03-10 11:01", "deleted"}}},
		deleted: map[string]string{"a": "2025-03-10 11:01"},
		from:    "2025-03-11", days: 2, now: "2025-03-12 23:00",
		want: want{},
	}, {
		name:      "a future range stops at now",
		instances: map[string][]ev{"a": {{"2025-03-11 18:00", "running"}}},
		from:      "2025-03-12", days: 3, now: "2025-03-12 06:30",
		want: want{"2025-03-12": {"a": 6.5}},
	}, {
		// 2025-03-09 02:00 local is when New York springs forward: a
		// "day" of that session is 23 hours, a UTC day still 24.
		name:      "UTC days whatever the session's time zone",
		instances: map[string][]ev{"a": {{"2025-03-08 20:00", "running"}, {"2025-03-10 04:00", "stopped"}}},
		from:      "2025-03-08", days: 3, now: "2025-03-12 23:00", timeZone: "America/New_York",
		want: want{"2025-03-08": {"a": 4}, "2025-03-09": {"a": 24}, "2025-03-10": {"a": 4}},
	}}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acct, err := store.CreateAccount(ctx, st.DB, id.Random(10)+"@example.com", "pro")
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]string{} // instance id → name
			for name, events := range tc.instances {
				names[seedInstance(t, st.DB, acct.ID, name, events, tc.deleted[name])] = name
			}
			tx, err := st.DB.BeginTxx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if tc.timeZone != "" {
				if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL TIME ZONE '%s'", tc.timeZone)); err != nil {
					t.Fatal(err)
				}
			}
			from, _ := time.Parse(store.DateLayout, tc.from)
			rows, err := store.RunningByDay(ctx, tx, acct.ID, from, tc.days, ts(t, tc.now))
			if err != nil {
				t.Fatal(err)
			}
			got := want{}
			for _, r := range rows {
				if got[r.Day] == nil {
					got[r.Day] = map[string]float64{}
				}
				got[r.Day][names[r.InstanceID]] = r.Seconds / 3600
			}
			if fmt.Sprint(round(got)) != fmt.Sprint(round(tc.want)) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// round keeps nine decimals of each figure, for comparing floats.
func round(w map[string]map[string]float64) map[string]map[string]string {
	out := map[string]map[string]string{}
	for d, m := range w {
		out[d] = map[string]string{}
		for k, v := range m {
			out[d][k] = fmt.Sprintf("%.9f", v)
		}
	}
	return out
}

// TestRunningByDayIsPerAccount: another account's instances never appear.
func TestRunningByDayIsPerAccount(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	ctx := context.Background()
	a, _ := store.CreateAccount(ctx, st.DB, "a@example.com", "pro")
	b, _ := store.CreateAccount(ctx, st.DB, "b@example.com", "pro")
	seedInstance(t, st.DB, a.ID, "a", []ev{{"2025-03-10 10:00", "running"}}, "")
	from, _ := time.Parse(store.DateLayout, "2025-03-10")
	rows, err := store.RunningByDay(ctx, st.DB, b.ID, from, 3, ts(t, "2025-03-12 00:00"))
	if err != nil || len(rows) != 0 {
		t.Fatalf("account b sees %v, %v", rows, err)
	}
	rows, err = store.RunningByDay(ctx, st.DB, a.ID, from, 3, ts(t, "2025-03-12 00:00"))
	if err != nil || len(rows) != 2 {
		t.Fatalf("account a sees %v, %v", rows, err)
	}
}

// TestRequestCounts: flushes add up, duplicates in one flush merge, a day
// range is inclusive, and a flush naming a deleted account still records
// the others.
func TestRequestCounts(t *testing.T) {
	t.Parallel()
	st := testenv.Store(t)
	ctx := context.Background()
	a, _ := store.CreateAccount(ctx, st.DB, "a@example.com", "pro")
	b, _ := store.CreateAccount(ctx, st.DB, "b@example.com", "pro")
	for _, k := range []store.Key{
		{ID: "key_a1", AccountID: a.ID, Name: "ci", Prefix: "p", SecretHash: []byte{1}, Scopes: []string{"usage:read"}},
		{ID: "key_a2", AccountID: a.ID, Name: "dashboard", Prefix: "p", SecretHash: []byte{1}, Scopes: []string{"usage:read"}},
	} {
		if _, err := store.InsertKey(ctx, st.DB, k); err != nil {
			t.Fatal(err)
		}
	}
	flush := func(rows ...store.RequestCount) {
		t.Helper()
		if err := store.AddRequestCounts(ctx, st.DB, rows); err != nil {
			t.Fatal(err)
		}
	}
	flush(
		store.RequestCount{AccountID: a.ID, KeyID: "key_a1", Day: "2025-03-10", Requests: 5},
		store.RequestCount{AccountID: a.ID, KeyID: "key_a2", Day: "2025-03-10", Requests: 1},
		store.RequestCount{AccountID: a.ID, KeyID: "key_a1", Day: "2025-03-10", Requests: 2},
		store.RequestCount{AccountID: b.ID, KeyID: "key_b1", Day: "2025-03-10", Requests: 9},
	)
	flush(
		store.RequestCount{AccountID: a.ID, KeyID: "key_a1", Day: "2025-03-10", Requests: 3},
		store.RequestCount{AccountID: a.ID, KeyID: "key_a1", Day: "2025-03-12", Requests: 4},
		store.RequestCount{AccountID: a.ID, KeyID: "key_a1", Day: "2025-03-13", Requests: 100},
		store.RequestCount{AccountID: "acct_gone", KeyID: "key_x", Day: "2025-03-10", Requests: 1},
	)
	got, err := store.RequestsByDay(ctx, st.DB, a.ID, "2025-03-10", "2025-03-12")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.KeyRequests{
		{Day: "2025-03-10", KeyID: "key_a1", KeyName: "ci", Requests: 10},
		{Day: "2025-03-10", KeyID: "key_a2", KeyName: "dashboard", Requests: 1},
		{Day: "2025-03-12", KeyID: "key_a1", KeyName: "ci", Requests: 4},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}
