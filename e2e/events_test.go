package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/store"
)

// feedEvent is an event of the feed as a client decodes it.
type feedEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// sseMessage is one message of an event stream; Data is empty for the
// opening message, which carries only the position.
type sseMessage struct {
	ID   string
	Data string
}

// sseClient reads an event stream in a goroutine.
type sseClient struct {
	msgs       chan sseMessage
	heartbeats chan struct{}
	cancel     context.CancelFunc
	done       chan struct{}
}

// openStream opens GET /api/v1/events/stream?query, resuming after
// lastEventID when it is set, and fails the test unless it answers 200.
func openStream(t *testing.T, sys *System, token, query, lastEventID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.URL+"/api/v1/events/stream?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		cancel()
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{msgs: make(chan sseMessage, 1000), heartbeats: make(chan struct{}, 1000), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.msgs)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var m sseMessage
		var has bool
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if has {
					c.msgs <- m
				}
				m, has = sseMessage{}, false
			case strings.HasPrefix(line, ":"):
				select {
				case c.heartbeats <- struct{}{}:
				default:
				}
			case strings.HasPrefix(line, "id: "):
				m.ID, has = strings.TrimPrefix(line, "id: "), true
			case strings.HasPrefix(line, "data: "):
				m.Data, has = m.Data+strings.TrimPrefix(line, "data: "), true
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

// close drops the connection, as a client that goes away does.
func (c *sseClient) close() {
	c.cancel()
	<-c.done
}

// next answers the next message, failing the test if none comes.
func (c *sseClient) next(t *testing.T) sseMessage {
	t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			t.Fatal("the stream ended")
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no message on the stream for 30 s")
	}
	return sseMessage{}
}

// until reads messages until one carries an event for which stop is true;
// it answers the events read (stop's included) and the last id seen.
func (c *sseClient) until(t *testing.T, stop func(feedEvent) bool) (events []feedEvent, lastID string) {
	t.Helper()
	for {
		m := c.next(t)
		lastID = m.ID
		if m.Data == "" {
			continue
		}
		var e feedEvent
		if err := json.Unmarshal([]byte(m.Data), &e); err != nil {
			t.Fatalf("stream data %q: %v", m.Data, err)
		}
		events = append(events, e)
		if stop(e) {
			return events, lastID
		}
	}
}

// finished is a stop condition: the operation.* event of operation opID.
func finished(opID string) func(feedEvent) bool {
	return func(e feedEvent) bool {
		if !strings.HasPrefix(e.Type, "operation.") {
			return false
		}
		var op Operation
		return json.Unmarshal(e.Data, &op) == nil && op.ID == opID
	}
}

// TestHandedOverRunsReportWhatTheyWrite: operations queued on one
// instance run one after the other, each run handing the next over
// (worker.handOff) and writing its start and its end in one statement
// each, with events rendered before the writes. Every event says what
// the api then says, and the status changes follow each other.
func TestHandedOverRunsReportWhatTheyWrite(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	instID := createRunning(t, sys, token, "handed")
	sys.StopWorker()
	var ops []Operation
	for _, action := range []string{"restart", "stop", "start", "restart"} {
		ops = append(ops, accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/"+action, token, nil))
	}
	sys.StartWorker()
	for _, op := range ops {
		if got := sys.WaitOperation(t, token, op.ID); got.Status != "succeeded" {
			t.Fatalf("%s %s: %+v", op.Type, op.ID, got)
		}
	}
	if to := eventsSayWhatTheAPISays(t, sys, token, instID); to != "running" {
		t.Fatalf("the last status change is to %s, want running", to)
	}
}

// TestAcceptsRacingHandedOverRuns: accepts keep changing the instance's
// status while the worker works its queue off, handing each run over to
// the next. A run whose rows an accept moved takes the long way; either
// way every event says what the api says, and every change of status
// starts where the one before ended.
func TestAcceptsRacingHandedOverRuns(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	instID := createRunning(t, sys, token, "racing")
	var ops []Operation
	for i := range 24 {
		action := []string{"restart", "stop", "start"}[i%3]
		ops = append(ops, accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/"+action, token, nil))
	}
	for _, op := range ops {
		if got := sys.WaitOperation(t, token, op.ID); got.Status != "succeeded" {
			t.Fatalf("%s %s: %+v", op.Type, op.ID, got)
		}
	}
	if to := eventsSayWhatTheAPISays(t, sys, token, instID); to != "running" {
		t.Fatalf("the last status change is to %s, want running (the last call was a start)", to)
	}
}

// statusChanges answers the instance's changes of status by id, the
// accepts' and the runs', checking that each starts where the one before
// ended.
func statusChanges(t *testing.T, sys *System, token, instID string) map[string]wire.InstanceEvent {
	t.Helper()
	r := sys.Do(t, http.MethodGet, "/api/v1/instances/"+instID+"/events?limit=100", token, nil)
	var history struct {
		Data []wire.InstanceEvent `json:"data"`
	}
	r.JSON(t, &history)
	if len(history.Data) < 3 {
		t.Fatalf("%d status changes: %s", len(history.Data), r.Body)
	}
	out := map[string]wire.InstanceEvent{}
	for i, e := range history.Data { // newest first
		out[e.ID] = e
		if i > 0 && (history.Data[i-1].FromStatus == nil || *history.Data[i-1].FromStatus != e.ToStatus) {
			t.Errorf("a status change from %v follows one to %s", history.Data[i-1].FromStatus, e.ToStatus)
		}
	}
	return out
}

// eventsSayWhatTheAPISays checks the account's feed, whose events are of
// the instance instID: every operation event is the operation as GET
// /operations/:id answers it now; every instance.status_changed is the
// change of status of the same id (statusChanges), and the last one has
// the instance as GET answers it now. It answers that change's to_status.
func eventsSayWhatTheAPISays(t *testing.T, sys *System, token, instID string) string {
	t.Helper()
	history := statusChanges(t, sys, token, instID)
	var last *feedEvent
	for _, e := range allEvents(t, sys, token, "") {
		switch e.Type {
		case "operation.succeeded", "operation.failed":
			var op Operation
			if err := json.Unmarshal(e.Data, &op); err != nil {
				t.Fatal(err)
			}
			sameJSON(t, e.Type+" "+op.ID, e.Data, sys.Do(t, http.MethodGet, "/api/v1/operations/"+op.ID, token, nil).Body)
		case "instance.status_changed":
			var got wire.StatusChanged
			if err := json.Unmarshal(e.Data, &got); err != nil {
				t.Fatal(err)
			}
			want, ok := history[e.ID]
			if !ok || want.FromStatus == nil || got.FromStatus != *want.FromStatus || got.ToStatus != want.ToStatus ||
				got.Instance.Status != want.ToStatus || got.OperationID == nil || want.OperationID == nil || *got.OperationID != *want.OperationID {
				t.Errorf("instance.status_changed %s says %s → %s (instance %s) by %s; its change of status is %s → %s by %s",
					e.ID, got.FromStatus, got.ToStatus, got.Instance.Status, deref(got.OperationID),
					deref(want.FromStatus), want.ToStatus, deref(want.OperationID))
			}
			last = &e
		}
	}
	if last == nil {
		t.Fatal("no instance.status_changed event")
	}
	var changed struct {
		Instance json.RawMessage `json:"instance"`
		ToStatus string          `json:"to_status"`
	}
	if err := json.Unmarshal(last.Data, &changed); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "the last instance.status_changed", changed.Instance, sys.Do(t, http.MethodGet, "/api/v1/instances/"+instID, token, nil).Body)
	return changed.ToStatus
}

// sameJSON fails the test unless got and want are the same JSON value.
func sameJSON(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s says\n%s\nwhere the api says\n%s", what, got, want)
	}
}

// allEvents pages through GET /events from the start.
func allEvents(t *testing.T, sys *System, token, query string) []feedEvent {
	t.Helper()
	var out []feedEvent
	after := ""
	for {
		r := sys.Do(t, http.MethodGet, "/api/v1/events?limit=3"+query+after, token, nil)
		if r.Status != 200 {
			t.Fatalf("GET /events: %d %s", r.Status, r.Body)
		}
		var page struct {
			Data       []feedEvent `json:"data"`
			NextCursor *string     `json:"next_cursor"`
		}
		r.JSON(t, &page)
		out = append(out, page.Data...)
		if len(page.Data) < 3 {
			return out
		}
		after = "&after=" + *page.NextCursor
	}
}

func ids(events []feedEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// TestEventStreamDeliversEveryEventOnceAcrossAReconnect: a stream dropped
// mid-way and resumed with Last-Event-ID delivers every event of the
// account exactly once, in the feed's order, including those committed
// while it was disconnected; another account's events never appear.
func TestEventStreamDeliversEveryEventOnceAcrossAReconnect(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{API: func(o *api.Options) { o.StreamHeartbeat = 100 * time.Millisecond }})
	_, token := sys.NewAccount(t, "pro")
	_, otherToken := sys.NewAccount(t, "pro")

	first := openStream(t, sys, token, "", "")
	opening := first.next(t)
	if opening.ID == "" || opening.Data != "" {
		t.Fatalf("opening message %+v, want only an id", opening)
	}
	// The other account keeps busy throughout.
	otherDone := make(chan struct{})
	go func() {
		defer close(otherDone)
		r := sys.Do(t, http.MethodPost, "/api/v1/instances", otherToken, map[string]string{"subdomain": "noisy-neighbour"})
		var op Operation
		if r.Status == 202 && json.Unmarshal(r.Body, &op) == nil {
			sys.WaitOperation(t, otherToken, op.ID)
		}
	}()

	create := accept(t, sys, http.MethodPost, "/api/v1/instances", token, map[string]string{"subdomain": "streamed"})
	got, lastID := first.until(t, finished(create.ID))
	first.close() // forced disconnect

	// Committed while nobody listens.
	stop := accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/stop", token, nil)
	sys.WaitOperation(t, token, stop.ID)

	second := openStream(t, sys, token, "", lastID)
	if m := second.next(t); m.ID != lastID || m.Data != "" {
		t.Fatalf("resumed stream opens with %+v, want the position %s", m, lastID)
	}
	start := accept(t, sys, http.MethodPost, "/api/v1/instances/"+create.InstanceID+"/start", token, nil)
	more, _ := second.until(t, finished(start.ID))
	got = append(got, more...)
	<-otherDone

	want := allEvents(t, sys, token, "")
	if strings.Join(ids(got), ",") != strings.Join(ids(want), ",") {
		t.Fatalf("the stream delivered\n%v\nthe feed holds\n%v", ids(got), ids(want))
	}
	seen := map[string]bool{}
	for _, e := range got {
		if seen[e.ID] {
			t.Fatalf("event %s delivered twice", e.ID)
		}
		seen[e.ID] = true
		if strings.Contains(string(e.Data), "noisy-neighbour") {
			t.Fatalf("another account's event on the stream: %s", e.Data)
		}
	}
	for _, e := range allEvents(t, sys, otherToken, "") {
		if seen[e.ID] {
			t.Fatalf("another account's event %s on the stream", e.ID)
		}
	}
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
	}
	if !strings.Contains(strings.Join(types, ","), "instance.status_changed,operation.succeeded") {
		t.Fatalf("event types %v: want status changes and operation events", types)
	}
	select {
	case <-second.heartbeats:
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat comment on the stream")
	}

	t.Run("types filters the stream", func(t *testing.T) {
		s := openStream(t, sys, token, "types=operation.succeeded&after="+opening.ID, "")
		s.next(t) // the opening position
		only, _ := s.until(t, finished(start.ID))
		if strings.Join(ids(only), ",") != strings.Join(ids(allEvents(t, sys, token, "&types=operation.succeeded")), ",") || len(only) != 3 {
			t.Fatalf("filtered stream %v", ids(only))
		}
	})
}

// TestEventFeed: GET /events pages oldest first with a cursor to continue
// from, filters by type, keeps accounts apart, and a cursor older than
// what retention pruned is 410 on the list and on the stream.
func TestEventFeed(t *testing.T) {
	t.Parallel()
	sys := Start(t, Options{})
	_, token := sys.NewAccount(t, "pro")
	_, otherToken := sys.NewAccount(t, "pro")
	var instID string
	var events []feedEvent

	step(t, "a running instance restarts", func(t *testing.T) {
		instID = createRunning(t, sys, token, "fed")
		restart := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/restart", token, nil)
		sys.WaitOperation(t, token, restart.ID)
	})

	step(t, "the feed is the account's events as stored", func(t *testing.T) {
		events = allEvents(t, sys, token, "")
		var inDB []string
		if err := sys.Store.DB.Select(&inDB, `SELECT e.id FROM events e JOIN instances i ON i.account_id = e.account_id
		WHERE i.id = $1 ORDER BY e.seq`, instID); err != nil {
			t.Fatal(err)
		}
		if strings.Join(ids(events), ",") != strings.Join(inDB, ",") || len(events) < 4 {
			t.Fatalf("feed %v, database %v", ids(events), inDB)
		}
		for _, e := range events {
			if !strings.HasPrefix(e.ID, "evt_") || e.Timestamp.IsZero() || len(e.Data) == 0 {
				t.Fatalf("event %+v", e)
			}
		}
	})

	page := func(t *testing.T, token, query string) (int, []feedEvent, *string, string) {
		t.Helper()
		r := sys.Do(t, http.MethodGet, "/api/v1/events?"+query, token, nil)
		var p struct {
			Data       []feedEvent `json:"data"`
			NextCursor *string     `json:"next_cursor"`
			Code       string      `json:"code"`
		}
		r.JSON(t, &p)
		return r.Status, p.Data, p.NextCursor, p.Code
	}
	step(t, "the end of the feed gives a cursor to come back with", func(t *testing.T) {
		_, data, next, _ := page(t, token, "limit=200")
		if len(data) != len(events) || next == nil {
			t.Fatalf("%d events, next %v", len(data), next)
		}
		_, data, again, _ := page(t, token, "after="+*next)
		if len(data) != 0 || again == nil || *again != *next {
			t.Fatalf("caught up: %d events, next %v", len(data), again)
		}
		more := accept(t, sys, http.MethodPost, "/api/v1/instances/"+instID+"/stop", token, nil)
		sys.WaitOperation(t, token, more.ID)
		_, data, _, _ = page(t, token, "after="+*next)
		if len(data) == 0 || !finished(more.ID)(data[len(data)-1]) {
			t.Fatalf("after coming back: %+v", data)
		}
	})
	step(t, "each event says what the api says", func(t *testing.T) {
		// The worker renders a run's events before it writes the run's
		// end (store.FinishSeen) or after (the long way, as for the
		// create): either way they are the rows as written.
		eventsSayWhatTheAPISays(t, sys, token, instID)
	})
	step(t, "types", func(t *testing.T) {
		_, data, _, _ := page(t, token, "types=operation.succeeded,operation.failed&types=operation.cancelled")
		if len(data) != 3 {
			t.Fatalf("%d operation events, want 3 (create, restart, stop)", len(data))
		}
		for _, e := range data {
			if e.Type != "operation.succeeded" {
				t.Fatalf("%+v", e)
			}
		}
		if status, _, _, code := page(t, token, "types=webhook.test"); status != 400 || code != "invalid_request" {
			t.Fatalf("types=webhook.test: %d %s", status, code)
		}
	})
	step(t, "another account sees none of it, nor can use its cursor", func(t *testing.T) {
		_, data, next, _ := page(t, token, "limit=1")
		if _, other, _, _ := page(t, otherToken, ""); len(other) != 0 {
			t.Fatalf("the other account's feed: %+v", other)
		}
		if status, _, _, code := page(t, otherToken, "after="+*next); status != 400 || code != "invalid_cursor" {
			t.Fatalf("a foreign cursor: %d %s (%d events)", status, code, len(data))
		}
		r := sys.Do(t, http.MethodGet, "/api/v1/events/stream", otherToken, nil, "Last-Event-ID", *next)
		if r.Status != 400 || r.Code(t) != "invalid_cursor" {
			t.Fatalf("a foreign Last-Event-ID: %d %s", r.Status, r.Body)
		}
	})
	step(t, "a cursor older than retention is 410", func(t *testing.T) {
		_, _, old, _ := page(t, token, "limit=1")
		if _, err := sys.Store.DB.Exec(`UPDATE events SET created_at = now() - interval '100 days' WHERE id = ANY ($1)`,
			"{"+events[0].ID+","+events[1].ID+"}"); err != nil {
			t.Fatal(err)
		}
		if n, err := store.PruneEvents(context.Background(), sys.Store.DB, time.Now().Add(-90*24*time.Hour), 1000); err != nil || n != 2 {
			t.Fatalf("pruned %d (%v)", n, err)
		}
		if status, _, _, code := page(t, token, "after="+*old); status != 410 || code != "cursor_expired" {
			t.Fatalf("list: %d %s", status, code)
		}
		r := sys.Do(t, http.MethodGet, "/api/v1/events/stream?after="+*old, token, nil)
		if r.Status != 410 || r.Code(t) != "cursor_expired" {
			t.Fatalf("stream: %d %s", r.Status, r.Body)
		}
		if status, data, _, _ := page(t, token, ""); status != 200 || len(data) == 0 || data[0].ID != events[2].ID {
			t.Fatalf("from the start after pruning: %d, first %v", status, data)
		}
	})
}
