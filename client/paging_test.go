package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// pager serves n operations, size per page, newest first, with cursors
// "c<next index>".
func pager(t *testing.T, n, size int) (*Client, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var cursors []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := r.URL.Query().Get("cursor")
		mu.Lock()
		cursors = append(cursors, cur)
		mu.Unlock()
		start := 0
		if cur != "" {
			fmt.Sscanf(cur, "c%d", &start)
		}
		var items []string
		for i := start; i < min(start+size, n); i++ {
			items = append(items, fmt.Sprintf(`{"id":"op_%d","type":"instance.start","status":"succeeded","instance_id":"inst_1","created_at":"2026-11-30T00:00:00Z","started_at":null,"finished_at":null,"error":null}`, i))
		}
		next := "null"
		if start+size < n {
			next = fmt.Sprintf(`"c%d"`, start+size)
		}
		io.WriteString(w, `{"data":[`+strings.Join(items, ",")+`],"next_cursor":`+next+`}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New("tok", WithBaseURL(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return c, &cursors
}

func TestAllWalksEveryPage(t *testing.T) {
	c, cursors := pager(t, 7, 3)
	var ids []string
	for op, err := range c.AllOperations(context.Background(), ListOperationsParams{Limit: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, op.ID)
	}
	if len(ids) != 7 || ids[0] != "op_0" || ids[6] != "op_6" {
		t.Fatalf("ids %v", ids)
	}
	if got := strings.Join(*cursors, ","); got != ",c3,c6" {
		t.Errorf("cursors sent %q", got)
	}
}

func TestAllStopsWhenTheCallerDoes(t *testing.T) {
	c, cursors := pager(t, 100, 10)
	n := 0
	for _, err := range c.AllOperations(context.Background(), ListOperationsParams{}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 12 {
			break
		}
	}
	if len(*cursors) != 2 {
		t.Errorf("%d pages fetched for 12 items of 10 a page", len(*cursors))
	}
}

func TestAllYieldsTheError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"bad cursor","code":"invalid_cursor"}`)
	}))
	defer srv.Close()
	c, _ := New("tok", WithBaseURL(srv.URL))
	n := 0
	for _, err := range c.AllLogs(context.Background(), ListLogsParams{Cursor: "forged"}) {
		n++
		if CodeOf(err) != "invalid_cursor" {
			t.Errorf("err = %v", err)
		}
	}
	if n != 1 {
		t.Errorf("%d yields, want the error once", n)
	}
}

// The stream reader skips heartbeats, joins multi-line data, and resumes a
// dropped stream with Last-Event-ID.
func TestStreamEventsResumes(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID")+"|"+r.URL.Query().Get("after"))
		n := len(lastIDs)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1:
			io.WriteString(w, "retry: 2000\nid: 10\n\n: heartbeat\n\nid: 11\nevent: operation.succeeded\ndata: {\"id\":\"evt_a\",\"type\":\"operation.succeeded\",\n")
			io.WriteString(w, "data: \"timestamp\":\"2026-11-30T00:00:00Z\",\"data\":{}}\n\n")
		default:
			io.WriteString(w, "id: 12\ndata: {\"id\":\"evt_b\",\"type\":\"webhook.test\",\"timestamp\":\"2026-11-30T00:00:01Z\",\"data\":{\"x\":1}}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c, _ := New("tok", WithBaseURL(srv.URL), WithRetryPolicy(RetryPolicy{MinBackoff: time.Millisecond}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []Event
	for ev, err := range c.StreamEvents(ctx, StreamEventsParams{After: "10"}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
		if len(got) == 2 {
			break
		}
	}
	if got[0].ID != "evt_a" || got[0].Cursor != "11" || got[1].ID != "evt_b" || got[1].Cursor != "12" || string(got[1].Data) != `{"x":1}` {
		t.Fatalf("events %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if lastIDs[0] != "|10" || lastIDs[1] != "11|10" {
		t.Errorf("resume headers %q", lastIDs)
	}
}

func TestStreamEventsEndsOnGone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(410)
		io.WriteString(w, `{"error":"too old","code":"cursor_expired"}`)
	}))
	defer srv.Close()
	c, _ := New("tok", WithBaseURL(srv.URL))
	for _, err := range c.StreamEvents(context.Background(), StreamEventsParams{After: "1"}) {
		if CodeOf(err) != "cursor_expired" {
			t.Fatalf("err = %v", err)
		}
	}
}
