package api

import (
	"encoding/binary"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/api/wire"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/store"
)

// listLogs serves the account's audit log, newest first: every request that
// changed something, written in the transaction of the change. Filters:
// key_id, and from (inclusive) / to (exclusive) as RFC 3339 times. Another
// account's key id gives an empty page, exactly as an unknown one does.
func (s *Server) listLogs(c *gin.Context) error {
	p := principal(c)
	f := store.AuditFilter{KeyID: c.Query("key_id")}
	if f.KeyID != "" && !id.HasPrefix(f.KeyID, id.Key) {
		return badRequest("key_id must be an API key id (key_…)")
	}
	var err error
	if f.From, err = queryTime(c, "from"); err != nil {
		return err
	}
	if f.To, err = queryTime(c, "to"); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.From.After(f.To) {
		return badRequest("from must not be later than to")
	}
	// The cursor is bound to the account and to every filter, so that a
	// cursor of another list cannot be replayed here.
	scope := "logs|" + p.AccountID + "|" + f.KeyID + "|" + timeKey(f.From) + "|" + timeKey(f.To)
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	var after store.AuditPosition
	if v := c.Query("cursor"); v != "" {
		if after, err = s.openLogCursor(scope, v); err != nil {
			return err
		}
	}
	rows, err := store.ListAudit(c.Request.Context(), s.opts.Store.DB, p.AccountID, f, after, limit+1)
	if err != nil {
		return err
	}
	var out wire.Page[wire.LogEntry]
	if len(rows) > limit {
		rows = rows[:limit]
		next := s.sealLogCursor(scope, rows[limit-1].Position())
		out.NextCursor = &next
	}
	out.Data = wire.List(rows, wire.NewLogEntry)
	c.JSON(http.StatusOK, out)
	return nil
}

// The audit log's cursor carries the (created_at, seq) of the last entry
// served, where cursor.go's carry a seq alone: the log is ordered by time
// so that a time range and the cursor bound one index range (see
// store.ListAudit). It is sealed and bound to its list the same way, so a
// forged, altered or foreign cursor is a 400.
const logCursorLen = 8 + 8

func (s *Server) sealLogCursor(scope string, pos store.AuditPosition) string {
	var b [logCursorLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(pos.Seq))
	binary.BigEndian.PutUint64(b[8:16], uint64(pos.CreatedAt.UnixMicro()))
	return s.sealCursorBytes(scope, b[:])
}

func (s *Server) openLogCursor(scope, cursor string) (store.AuditPosition, error) {
	b, ok := s.openCursorBytes(scope, cursor, logCursorLen)
	if !ok {
		return store.AuditPosition{}, errBadCursor
	}
	seq := int64(binary.BigEndian.Uint64(b[:8]))
	if seq <= 0 {
		return store.AuditPosition{}, errBadCursor
	}
	return store.AuditPosition{Seq: seq, CreatedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[8:16]))).UTC()}, nil
}

// queryTime reads an optional RFC 3339 time parameter; zero when absent.
func queryTime(c *gin.Context, name string) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest("%s must be an RFC 3339 time such as 2025-01-31T00:00:00Z", name)
	}
	return t.UTC(), nil
}

// timeKey writes a filter time into a cursor scope: one spelling per
// instant, so that "…+02:00" and the same instant in Z share cursors.
func timeKey(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
