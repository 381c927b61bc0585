package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/api/wire"
)

// Cursor paging (API.md): ?limit=N&cursor=C → {"data": [...], "next_cursor"}.
// A cursor is the seq of the last row served, bound to the list it came
// from (its filters) and signed, so a forged, altered or foreign cursor is
// a 400, never a 500 and never a peek at another list.

const (
	defaultLimit = 50
	maxLimit     = 200
)

// pageParams reads limit and cursor for the list named scope (the route and
// its filters). after is 0 for the first page; otherwise rows with a smaller
// seq come next (newest first).
func (s *Server) pageParams(c *gin.Context, scope string) (limit int, before int64, err error) {
	if limit, err = pageLimit(c); err != nil {
		return 0, 0, err
	}
	if v := c.Query("cursor"); v != "" {
		before, err = s.openCursor(accountScope(c, scope), v)
		if err != nil {
			return 0, 0, err
		}
	}
	return limit, before, nil
}

// pageLimit reads limit: 1 to maxLimit, default defaultLimit.
func pageLimit(c *gin.Context) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badRequest("limit must be an integer from 1 to %d", maxLimit)
	}
	return n, nil
}

var errBadCursor = &Error{Status: http.StatusBadRequest, Code: "invalid_cursor", Message: "cursor is invalid or belongs to another list; start again without it"}

// accountScope binds a list's cursors to the caller's account as well.
func accountScope(c *gin.Context, scope string) string {
	return principal(c).AccountID + "|" + scope
}

func (s *Server) sealCursor(scope string, seq int64) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(seq))
	copy(b[8:], s.cursorMAC(scope, b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Server) openCursor(scope, cursor string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) != 24 {
		return 0, errBadCursor
	}
	if !hmac.Equal(b[8:], s.cursorMAC(scope, b[:8])) {
		return 0, errBadCursor
	}
	seq := int64(binary.BigEndian.Uint64(b[:8]))
	if seq <= 0 {
		return 0, errBadCursor
	}
	return seq, nil
}

func (s *Server) cursorMAC(scope string, seq []byte) []byte {
	m := hmac.New(sha256.New, s.cursorKey)
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write(seq)
	return m.Sum(nil)[:16]
}

// newPage builds the answer from limit+1 fetched rows, each made into its
// wire object by newObject: the extra row only says that another page
// exists.
func newPage[R, T any](c *gin.Context, s *Server, scope string, rows []R, limit int, seqOf func(R) int64, newObject func(R) T) wire.Page[T] {
	var p wire.Page[T]
	if len(rows) > limit {
		rows = rows[:limit]
		next := s.sealCursor(accountScope(c, scope), seqOf(rows[limit-1]))
		p.NextCursor = &next
	}
	p.Data = wire.List(rows, newObject)
	return p
}
