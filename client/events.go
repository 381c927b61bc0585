package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"
	"time"
)

// Event is one event of the account's feed (the FeedEvent schema): what a
// webhook of the same type delivers, with its evt_ id. Data is an Operation
// for operation.* and a StatusChange for instance.status_changed.
type Event struct {
	ID        string           `json:"id"`
	Type      WebhookEventType `json:"type"`
	Timestamp time.Time        `json:"timestamp"`
	Data      json.RawMessage  `json:"data"`
	// Cursor is the stream's id: of this event, to resume after it
	// (StreamEventsParams.After); empty for events read with ListEvents,
	// whose page carries the cursor.
	Cursor string `json:"-"`
}

// Envelope answers the event as a webhook receiver gets it.
func (e *Event) Envelope() EventEnvelope {
	return EventEnvelope{Type: e.Type, Timestamp: e.Timestamp, Data: e.Data}
}

// ListEventsParams page the event feed, oldest first. After is a cursor
// (the NextCursor of a page, or a stream's event cursor); Types keeps only
// the named event types. The page's NextCursor is where to continue, now
// or later: it repeats After when nothing is new.
type ListEventsParams struct {
	After string             `query:"after"`
	Types []WebhookEventType `query:"types"`
	Limit int                `query:"limit"`
}

// ListEvents answers one page of the event feed, oldest first.
// Scope operations:read.
func (c *Client) ListEvents(ctx context.Context, p ListEventsParams) (*Page[Event], error) {
	return callT[Page[Event]](ctx, c, request{method: http.MethodGet, path: pathOf("events"), query: encodeQuery(p)})
}

// AllEvents walks the event feed from p.After to the newest event.
func (c *Client) AllEvents(ctx context.Context, p ListEventsParams) iter.Seq2[Event, error] {
	return all(ctx, p.After, func(ctx context.Context, cursor string) (*Page[Event], error) {
		p.After = cursor
		return c.ListEvents(ctx, p)
	})
}

// streamIdle is how long a stream may stay silent before it is resumed on
// a new connection.
const streamIdle = 45 * time.Second

// StreamEventsParams choose where a stream starts: after the event whose
// cursor is After, or with the events from now on when it is empty; Types
// keeps only the named event types.
type StreamEventsParams struct {
	After string             `query:"after"`
	Types []WebhookEventType `query:"types"`
}

// StreamEvents follows GET /events/stream (server-sent events) and yields
// each event as it happens, until ctx ends or the caller stops ranging. A
// dropped connection is resumed where it stopped (Last-Event-ID), with the
// client's backoff; an error that is not worth retrying (401, 403, 410
// cursor_expired) is yielded once and ends the stream.
// Scope operations:read.
func (c *Client) StreamEvents(ctx context.Context, p StreamEventsParams) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		last := p.After
		failures := 0
		for ctx.Err() == nil {
			r := request{method: http.MethodGet, path: pathOf("events", "stream"), stream: true, query: encodeQuery(p)}
			if last != p.After {
				// Resuming: as a browser's EventSource does (the header
				// wins over after=).
				r.header = http.Header{"Last-Event-Id": {last}}
			}
			resp, err := c.do(ctx, r)
			if err != nil {
				if ctx.Err() == nil {
					yield(Event{}, err)
				}
				return
			}
			// A stream that ends, cleanly or not, is resumed below from
			// the last event it delivered.
			// The server sends a heartbeat every 15 s: a stream silent for
			// three of them is dead though its connection looks open.
			watchdog := time.AfterFunc(streamIdle, func() { resp.stream.Close() })
			got, stop := readStream(resp.stream, yield, &last, func() { watchdog.Reset(streamIdle) })
			watchdog.Stop()
			resp.stream.Close()
			if stop || ctx.Err() != nil {
				return
			}
			if got {
				failures = 0
			}
			if sleepCtx(ctx, c.retry.backoff(failures)) != nil {
				return
			}
			failures++
		}
	}
}

// readStream reads server-sent events until the stream ends, yielding each
// "data" as an Event and keeping the last "id" in *last. It answers whether
// it yielded anything and whether the caller stopped.
func readStream(body io.Reader, yield func(Event, error) bool, last *string, alive func()) (got, stop bool) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var id string
	var data strings.Builder
	for sc.Scan() {
		alive()
		line := sc.Text()
		if line == "" {
			// A blank line dispatches the event (WHATWG HTML, 9.2.6). A
			// message with an id and no data moves the resume position
			// only: the stream's first message says where it starts.
			if id != "" {
				*last = id
			}
			if data.Len() > 0 {
				var ev Event
				if jerr := json.Unmarshal([]byte(data.String()), &ev); jerr != nil {
					if !yield(Event{}, fmt.Errorf("moc: event stream: undecodable event %q: %w", id, jerr)) {
						return got, true
					}
				} else {
					ev.Cursor = id
					got = true
					if !yield(ev, nil) {
						return got, true
					}
				}
			}
			data.Reset()
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: the heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		}
	}
	return got, false
}
