package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/store"
)

// Idempotency-Key (API.md; Stripe's idempotent requests; the IETF draft).
//
// The key is claimed in Postgres (one round trip) before the handler runs.
// A handler that changes state stores its answer in its own transaction
// (see change), so an operation and its stored answer exist together or
// not at all. Other answers below 500 are stored after the handler; a 5xx
// releases the claim so that the retry runs afresh. A claim whose process
// died is taken over after Options.IdempotencyLockTimeout.

const ctxIdempotency = "mocd.idempotency"

// DefaultIdempotencyLockTimeout is how long an unfinished claim blocks its
// key before a retry may take it over: longer than any request may run.
const DefaultIdempotencyLockTimeout = 2 * time.Minute

type idempotencyClaim struct {
	apiKeyID, key string
	stored        bool
	// dbClock is the database's clock as the claim read it; not read for
	// a key taken over. A lifecycle call dates its operation from it
	// (acceptAlone).
	dbClock store.Clock
}

var (
	errIdempotencyInUse = newError(http.StatusConflict, "idempotency_key_in_use",
		"a request with this Idempotency-Key is still in progress; retry after it finishes")
	errIdempotencyReused = newError(http.StatusUnprocessableEntity, "idempotency_key_reused",
		"this Idempotency-Key was used with a different method, path or body; use a new key for a new request")
)

// idempotencyMiddleware applies to POST, PATCH and DELETE routes.
func (s *Server) idempotencyMiddleware(c *gin.Context) {
	raw, present := c.Request.Header["Idempotency-Key"]
	if !present {
		c.Next()
		return
	}
	key, ok := parseIdempotencyKey(raw)
	if !ok {
		writeError(c, s.log, newError(http.StatusBadRequest, "invalid_idempotency_key",
			"Idempotency-Key must be 1 to 255 printable ASCII characters (or a quoted string)"))
		return
	}
	ctx, p := c.Request.Context(), principal(c)
	path := c.Request.URL.Path
	fp := fingerprint(c.Request.Method, c.Request.URL.RequestURI(), requestBody(c))
	// Route scope and plan were checked before this middleware runs, and
	// the key is scoped to the API key that sent it: a replay never gives a
	// caller an answer it could not obtain by making the request itself.
	claimed := false
	var dbClock store.Clock
	for attempt := 0; !claimed; attempt++ {
		cl, err := store.ClaimIdempotencyKey(ctx, s.opts.Store.DB, p.AccountID, p.ID, key, c.Request.Method, path, fp, s.idempotencyLockTimeout())
		if err != nil {
			writeError(c, s.log, err)
			return
		}
		switch {
		case cl.Claimed:
			claimed, dbClock = true, cl.Clock
		case cl.Existing != nil:
			took, err := s.answerExisting(c, p.ID, key, *cl.Existing, fp)
			if err != nil {
				writeError(c, s.log, err)
				return
			}
			if !took {
				return
			}
			claimed = true
		case attempt == 5:
			s.counters.idempotency.WithLabelValues(idemInUse).Inc()
			writeError(c, s.log, errIdempotencyInUse)
			return
		}
	}

	claim := &idempotencyClaim{apiKeyID: p.ID, key: key, dbClock: dbClock}
	c.Set(ctxIdempotency, claim)
	rec2 := &recordingWriter{ResponseWriter: c.Writer}
	c.Writer = rec2
	defer func() {
		// Also on panic: the claim must not block the key.
		if claim.stored {
			return
		}
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		status := rec2.Status()
		if status >= 500 || status == 499 || !rec2.Written() {
			_ = store.ReleaseIdempotencyKey(bg, s.opts.Store.DB, claim.apiKeyID, claim.key)
			return
		}
		h := http.Header{}
		for _, k := range storedHeaders {
			if v := rec2.Header().Get(k); v != "" {
				h.Set(k, v)
			}
		}
		a, err := s.answer(claim, status, h, rec2.body.Bytes())
		if err == nil {
			err = store.CompleteIdempotencyKey(bg, s.opts.Store.DB, *a)
		}
		if err != nil {
			s.log.WarnContext(bg, "store idempotent response", slog.Any("error", err))
		}
	}()
	c.Next()
}

// storedHeaders are the answer headers a replay repeats.
var storedHeaders = []string{"Content-Type", "Location"}

func (s *Server) idempotencyLockTimeout() time.Duration {
	if s.opts.IdempotencyLockTimeout > 0 {
		return s.opts.IdempotencyLockTimeout
	}
	return DefaultIdempotencyLockTimeout
}

// answerExisting replays a finished request, or refuses a mismatched or
// still-running one. It returns took=true, having written nothing, when the
// stored answer can no longer be opened (sealed under a MOC_SECRET_KEY that
// is neither the current nor a previous one) and the caller has taken the
// key over: the request then runs afresh, which is better than a 500 on
// every retry for a day.
func (s *Server) answerExisting(c *gin.Context, apiKeyID, key string, rec store.IdempotencyRecord, fp []byte) (took bool, err error) {
	if !bytes.Equal(rec.Fingerprint, fp) {
		s.counters.idempotency.WithLabelValues(idemReused).Inc()
		return false, errIdempotencyReused
	}
	if rec.StatusCode == nil {
		s.counters.idempotency.WithLabelValues(idemInUse).Inc()
		return false, errIdempotencyInUse
	}
	body := rec.Body
	if rec.Sealed {
		var plain string
		err := errors.New("no MOC_SECRET_KEY")
		if s.opts.SecretBox != nil {
			plain, err = s.opts.SecretBox.Open(rec.Body)
		}
		if err != nil {
			s.log.WarnContext(c.Request.Context(), "a stored idempotent answer cannot be opened with the current or previous MOC_SECRET_KEY; the request runs afresh",
				slog.String("key_id", apiKeyID))
			took, terr := store.TakeOverIdempotencyKey(c.Request.Context(), s.opts.Store.DB, apiKeyID, key, fp, rec.Body)
			if terr != nil {
				return false, terr
			}
			if !took {
				return false, errIdempotencyInUse
			}
			return true, nil
		}
		body = []byte(plain)
	}
	var h http.Header
	_ = json.Unmarshal(rec.Headers, &h)
	for k, vs := range h {
		if len(vs) > 0 {
			c.Header(k, vs[0])
		}
	}
	s.counters.idempotency.WithLabelValues(idemReplayed).Inc()
	c.Header("Idempotent-Replayed", "true")
	c.Status(*rec.StatusCode)
	if len(body) > 0 {
		c.Writer.Write(body)
	} else {
		c.Writer.WriteHeaderNow()
	}
	c.Abort()
	return false, nil
}

// idempotentAnswer is what a change handler stores, in its own
// transaction, for the request's claimed Idempotency-Key; nil without one.
func (s *Server) idempotentAnswer(c *gin.Context, status int, header http.Header, body []byte) (*store.IdempotentAnswer, error) {
	v, ok := c.Get(ctxIdempotency)
	if !ok {
		return nil, nil
	}
	claim := v.(*idempotencyClaim)
	h := header.Clone()
	if body != nil {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	return s.answer(claim, status, h, body)
}

// answer seals body and builds the answer to store for claim.
func (s *Server) answer(claim *idempotencyClaim, status int, h http.Header, body []byte) (*store.IdempotentAnswer, error) {
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	body, sealed, err := s.sealAnswer(body)
	if err != nil {
		return nil, err
	}
	return &store.IdempotentAnswer{APIKeyID: claim.apiKeyID, Key: claim.key, Status: status, Headers: hb, Body: body, Sealed: sealed}, nil
}

// sealAnswer encrypts a stored answer with MOC_SECRET_KEY's box: some
// answers (a new key's token, a webhook secret) are shown once and must not
// rest in clear in the idempotency table. Without a box (some tests) the
// body is stored as is.
func (s *Server) sealAnswer(body []byte) ([]byte, bool, error) {
	if s.opts.SecretBox == nil || len(body) == 0 {
		return body, false, nil
	}
	sealed, err := s.opts.SecretBox.Seal(string(body))
	if err != nil {
		return nil, false, fmt.Errorf("seal idempotent answer: %w", err)
	}
	return sealed, true, nil
}

// markIdempotentStored tells the middleware that the answer was committed
// with the change, saving it a round trip.
func markIdempotentStored(c *gin.Context) {
	if v, ok := c.Get(ctxIdempotency); ok {
		v.(*idempotencyClaim).stored = true
	}
}

// parseIdempotencyKey accepts a bare key or an RFC 8941 sf-string.
func parseIdempotencyKey(raw []string) (string, bool) {
	if len(raw) != 1 {
		return "", false
	}
	v := strings.TrimSpace(raw[0])
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		inner := v[1 : len(v)-1]
		for i := 0; i < len(inner); i++ {
			ch := inner[i]
			switch {
			case ch == '\\':
				if i+1 >= len(inner) || (inner[i+1] != '"' && inner[i+1] != '\\') {
					return "", false
				}
				i++
				b.WriteByte(inner[i])
			case ch == '"':
				return "", false
			default:
				b.WriteByte(ch)
			}
		}
		v = b.String()
	}
	if len(v) < 1 || len(v) > 255 {
		return "", false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return "", false
		}
	}
	return v, true
}

// fingerprint identifies a request: method, path with query, body.
func fingerprint(method, uri string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(uri))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

// recordingWriter keeps a copy of the body to store it after the handler.
type recordingWriter struct {
	gin.ResponseWriter
	body bytes.Buffer
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (w *recordingWriter) WriteString(s string) (int, error) {
	w.body.WriteString(s)
	return w.ResponseWriter.WriteString(s)
}
