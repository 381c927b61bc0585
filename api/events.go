package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/webhook"
)

// FeedTypes are the event types of the feed: everything webhooks deliver
// about operations and instances (webhook.test goes to one endpoint only).
var FeedTypes = []string{
	webhook.EventOperationSucceeded, webhook.EventOperationFailed,
	webhook.EventOperationCancelled, webhook.EventInstanceStatusChanged,
}

// defaultHeartbeat is the event stream's heartbeat interval (API.md).
const defaultHeartbeat = 15 * time.Second

// streamBatch is how many events a stream reads per query.
const streamBatch = 100

// streamWriteTimeout bounds each write of a stream: a client that stops
// reading is dropped instead of holding the stream forever.
const streamWriteTimeout = 30 * time.Second

// feedParams reads the types filter (comma-separated and/or repeated) and
// the position to read after: the Last-Event-ID header (an SSE client
// resuming) wins over ?after=. ok is false when neither is given.
func (s *Server) feedParams(c *gin.Context, header bool) (types []string, after int64, ok bool, err error) {
	for _, v := range c.QueryArray("types") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			if !slices.Contains(FeedTypes, t) {
				return nil, 0, false, badRequest("types: %q is not an event type of the feed; use %s", t, strings.Join(FeedTypes, ", "))
			}
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
	}
	cursor := c.Query("after")
	if header && c.GetHeader("Last-Event-ID") != "" {
		cursor = c.GetHeader("Last-Event-ID")
	}
	if cursor == "" {
		return types, 0, false, nil
	}
	after, err = s.openFeedCursor(c, cursor)
	return types, after, err == nil, err
}

// The feed's cursor is a position in the account's feed, not bound to the
// types filter: a position means the same whatever is filtered, so the
// stream's ids, GET /events' next_cursor and ?after= are interchangeable.
// Unlike other cursors it may be 0, the start of an empty feed.
func (s *Server) sealFeedCursor(c *gin.Context, seq int64) string {
	return s.sealCursor(accountScope(c, "feed"), seq)
}

func (s *Server) openFeedCursor(c *gin.Context, cursor string) (int64, error) {
	if cursor == s.sealFeedCursor(c, 0) {
		return 0, nil
	}
	return s.openCursor(accountScope(c, "feed"), cursor)
}

// listEvents serves the account's event feed oldest first. next_cursor is
// where to continue: it follows the last event served, or repeats after
// when there was nothing new, so a client polling the feed passes it back
// as after; it is null only when nothing has been read yet. A page shorter
// than limit means the client has caught up.
func (s *Server) listEvents(c *gin.Context) error {
	types, after, hasAfter, err := s.feedParams(c, false)
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	var from *int64
	if hasAfter {
		from = &after
	}
	rows, err := store.ListFeedEvents(c.Request.Context(), s.opts.Store.DB, principal(c).AccountID, from, types, limit)
	if err != nil {
		return err
	}
	out := wire.Page[wire.FeedEvent]{Data: make([]wire.FeedEvent, 0, len(rows))}
	for _, r := range rows {
		e, err := wire.NewFeedEvent(r)
		if err != nil {
			return err
		}
		out.Data = append(out.Data, e)
	}
	switch {
	case len(rows) > 0:
		next := s.sealFeedCursor(c, rows[len(rows)-1].Seq)
		out.NextCursor = &next
	case hasAfter:
		next := s.sealFeedCursor(c, after)
		out.NextCursor = &next
	}
	c.JSON(http.StatusOK, out)
	return nil
}

// streamEvents serves the feed live as Server-Sent Events. Each event's
// id: is its cursor; a client resumes with Last-Event-ID (or ?after=)
// without a gap or a repeat, because one account's events commit in seq
// order (store.QueueWebhookEvent). Without a cursor the stream starts at
// the current end of the feed, and its first message carries only that
// position as id:, so a client that reconnects before any event arrives
// resumes from there. It is woken by the NOTIFY of each commit that
// records an event of the account, shares the process's one listening
// connection with the waiters, and also looks again at each heartbeat, so
// that a wake-up makes it faster but is never needed.
func (s *Server) streamEvents(c *gin.Context) error {
	types, after, hasCursor, err := s.feedParams(c, true)
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	accountID := principal(c).AccountID
	db := s.opts.Store.DB
	wake, stop := s.subscribe(store.ChannelEvent, accountID)
	defer stop()

	// Everything that can be refused is refused before the 200.
	var first []store.FeedEvent
	if hasCursor {
		if first, err = store.ListFeedEvents(ctx, db, accountID, &after, types, streamBatch); err != nil {
			return err
		}
	} else if after, err = store.FeedHead(ctx, db, accountID); err != nil {
		return err
	}

	s.extendDeadlines(c, time.Time{}) // the stream lasts as long as the client
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	c.Status(http.StatusOK)
	var buf bytes.Buffer
	buf.WriteString("retry: 2000\nid: " + s.sealFeedCursor(c, after) + "\n\n")
	rc := http.NewResponseController(c.Writer)
	write := func() error {
		if buf.Len() == 0 {
			return nil
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, err := c.Writer.Write(buf.Bytes())
		buf.Reset()
		if err == nil {
			err = rc.Flush()
		}
		return err
	}
	// send writes rows and reads on until a short page: caught up.
	send := func(rows []store.FeedEvent) error {
		for {
			for _, r := range rows {
				e, err := wire.NewFeedEvent(r)
				if err != nil {
					return err
				}
				data, err := json.Marshal(e)
				if err != nil {
					return err
				}
				buf.WriteString("id: " + s.sealFeedCursor(c, r.Seq) + "\ndata: ")
				buf.Write(data)
				buf.WriteString("\n\n")
				after = r.Seq
			}
			if err := write(); err != nil {
				return err
			}
			if len(rows) < streamBatch {
				return nil
			}
			var err error
			if rows, err = store.ListFeedEvents(ctx, db, accountID, &after, types, streamBatch); err != nil {
				return err
			}
		}
	}
	heartbeat := time.NewTicker(s.opts.StreamHeartbeat)
	defer heartbeat.Stop()
	rows := first
	for {
		if err := send(rows); err != nil {
			s.endStream(c, err)
			return nil
		}
		select {
		case <-wake:
		case <-heartbeat.C:
			buf.WriteString(": heartbeat\n\n")
		case <-s.closing:
			return nil
		case <-ctx.Done():
			return nil
		}
		if rows, err = store.ListFeedEvents(ctx, db, accountID, &after, types, streamBatch); err != nil {
			s.endStream(c, err)
			return nil
		}
	}
}

// endStream logs why a stream ended early; the answer has begun, so the
// only way to tell the client is to close the stream (it reconnects with
// Last-Event-ID, and learns of an expired cursor then, as a 410).
func (s *Server) endStream(c *gin.Context, err error) {
	ctx := c.Request.Context()
	if ctx.Err() != nil || errors.Is(err, store.ErrCursorExpired) {
		return
	}
	s.log.WarnContext(ctx, "event stream ended", slog.Any("error", err))
}
