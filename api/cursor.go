package api

import (
	"crypto/cipher"
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
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	return s.sealCursorBytes(scope, b[:])
}

func (s *Server) openCursor(scope, cursor string) (int64, error) {
	b, ok := s.openCursorBytes(scope, cursor, 8)
	if !ok {
		return 0, errBadCursor
	}
	seq := int64(binary.BigEndian.Uint64(b))
	if seq <= 0 {
		return 0, errBadCursor
	}
	return seq, nil
}

// A cursor is sealed, not only signed: a signed cursor carried the global
// row sequence in clear, and two cursors a minute apart told a caller how
// busy every other account had been (issue 12). The construction is SIV
// (RFC 5297's idea, with HMAC-SHA256 as the PRF): the tag is
// HMAC(scope, payload) truncated to 16 bytes and is also the CTR IV of the
// payload's AES-256 encryption. It is deterministic (one cursor per
// position and list, which the event feed compares) and authenticated:
// a forged, altered or foreign cursor fails the tag check.
const cursorTagLen = 16

func (s *Server) sealCursorBytes(scope string, payload []byte) string {
	tag := s.cursorMAC(scope, payload)
	out := make([]byte, cursorTagLen+len(payload))
	copy(out, tag)
	cipher.NewCTR(s.cursorCipher, tag).XORKeyStream(out[cursorTagLen:], payload)
	return base64.RawURLEncoding.EncodeToString(out)
}

// openCursorBytes returns the n-byte payload of a cursor sealed for scope.
func (s *Server) openCursorBytes(scope, cursor string, n int) ([]byte, bool) {
	if len(cursor) > base64.RawURLEncoding.EncodedLen(cursorTagLen+n) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) != cursorTagLen+n {
		return nil, false
	}
	payload := make([]byte, n)
	cipher.NewCTR(s.cursorCipher, b[:cursorTagLen]).XORKeyStream(payload, b[cursorTagLen:])
	if !hmac.Equal(b[:cursorTagLen], s.cursorMAC(scope, payload)) {
		return nil, false
	}
	return payload, true
}

func (s *Server) cursorMAC(scope string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.cursorKey)
	m.Write([]byte(scope))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:cursorTagLen]
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
