package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/id"
	"github.com/myopenclaw/mocd/logctx"
	"github.com/myopenclaw/mocd/plan"
	"github.com/myopenclaw/mocd/store"
)

// Context keys set by the middleware chain.
const (
	ctxPrincipal = "mocd.principal"
	ctxBody      = "mocd.body"
)

// maxBody is the largest request body accepted (API.md: 1 MiB).
const maxBody = 1 << 20

// requestID is the request's id, carried by its context (logctx) so that
// every log line written with that context has it.
func requestID(c *gin.Context) string { return logctx.RequestID(c.Request.Context()) }

// principal is the authenticated key of the request; every handler behind
// authMiddleware has one.
func principal(c *gin.Context) *store.Principal {
	p, _ := c.Get(ctxPrincipal)
	return p.(*store.Principal)
}

// requestIDMiddleware echoes a sane caller-sent X-Request-Id or makes one,
// and puts it in the request's context, where the logger finds it.
func (s *Server) requestIDMiddleware(c *gin.Context) {
	rid := c.GetHeader("X-Request-Id")
	if !validRequestID(rid) {
		rid = "req_" + id.Random(20)
	}
	c.Request = c.Request.WithContext(logctx.WithRequestID(c.Request.Context(), rid))
	c.Header("X-Request-Id", rid)
	c.Next()
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// accessLogMiddleware logs one line per request: never a header, a body or
// a query string, so no token or secret can reach the log.
func (s *Server) accessLogMiddleware(c *gin.Context) {
	start := time.Now()
	c.Next()
	attrs := []slog.Attr{
		slog.String("method", methodLabel(c.Request.Method)),
		slog.String("route", routeLabel(c)),
		slog.String("path", capPath(c.Request.URL.Path)),
		slog.Int("status", c.Writer.Status()),
		slog.Duration("duration", time.Since(start)),
		slog.String("client_ip", c.ClientIP()),
	}
	if p, ok := c.Get(ctxPrincipal); ok {
		attrs = append(attrs, slog.String("key_id", p.(*store.Principal).ID))
	}
	s.log.LogAttrs(c.Request.Context(), slog.LevelInfo, "request", attrs...)
}

// maxLoggedPath is the longest path the access log writes whole: a caller
// may send a path of nearly 1 MB, and the log is not theirs to fill.
const maxLoggedPath = 512

// capPath cuts a path to maxLoggedPath bytes, on a UTF-8 boundary, and
// says it did.
func capPath(p string) string {
	if len(p) <= maxLoggedPath {
		return p
	}
	cut := maxLoggedPath
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return p[:cut] + "…(" + strconv.Itoa(len(p)) + " bytes)"
}

// recoverMiddleware turns a panic into a logged 500 without a stack trace
// in the answer.
func (s *Server) recoverMiddleware(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.ErrorContext(c.Request.Context(), "panic", slog.Any("panic", r))
			if !c.Writer.Written() {
				writeError(c, s.log, newError(http.StatusInternalServerError, "internal_error", "internal error; the request id identifies it to support"))
			}
		}
	}()
	c.Next()
}

// transportMiddleware refuses plain-HTTP API calls unless TLS is ours, a
// trusted proxy says the client used HTTPS, or plain HTTP is allowed (dev).
func (s *Server) transportMiddleware(c *gin.Context) {
	if c.Request.TLS != nil || s.opts.AllowPlainHTTP {
		c.Next()
		return
	}
	if strings.EqualFold(c.GetHeader("X-Forwarded-Proto"), "https") && s.fromTrustedProxy(c.Request.RemoteAddr) {
		c.Next()
		return
	}
	writeError(c, s.log, newError(http.StatusForbidden, "https_required",
		"HTTPS is required: call https://%s%s", c.Request.Host, c.Request.URL.RequestURI()))
}

func (s *Server) fromTrustedProxy(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// bodyMiddleware reads a request body once, up to maxBody, so that the
// idempotency fingerprint and the handler see the same bytes.
func (s *Server) bodyMiddleware(c *gin.Context) {
	if c.Request.Body == nil || c.Request.Method == http.MethodGet || c.Request.Method == http.MethodHead {
		c.Next()
		return
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, maxBody+1))
	if err != nil {
		writeError(c, s.log, badRequest("could not read the request body"))
		return
	}
	if len(body) > maxBody {
		writeError(c, s.log, newError(http.StatusRequestEntityTooLarge, "payload_too_large", "the request body is larger than 1 MiB"))
		return
	}
	c.Set(ctxBody, body)
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	c.Next()
}

func requestBody(c *gin.Context) []byte {
	b, _ := c.Get(ctxBody)
	body, _ := b.([]byte)
	return body
}

// decodeJSON decodes the request body into v, refusing malformed JSON,
// unknown fields and trailing data with a 400 that says what is wrong.
func decodeJSON(c *gin.Context, v any) error {
	body := requestBody(c)
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("a JSON body is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		var apiErr *Error
		switch {
		case errors.As(err, &apiErr):
			return apiErr // a field's own UnmarshalJSON said what is wrong
		case errors.As(err, &typeErr):
			return badRequest("field %q must be of type %s", typeErr.Field, typeErr.Type)
		case errors.As(err, &syntaxErr):
			return badRequest("malformed JSON at byte %d", syntaxErr.Offset)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return badRequest("malformed JSON body")
		}
	}
	if dec.More() {
		return badRequest("unexpected data after the JSON body")
	}
	return nil
}

var errUnauthorized = &Error{
	Status:  http.StatusUnauthorized,
	Code:    "unauthorized",
	Message: "invalid, expired or revoked API token",
	Header:  http.Header{"Www-Authenticate": {`Bearer realm="mocd", error="invalid_token"`}},
}

// authMiddleware checks the bearer token: shape and checksum first (no I/O),
// then the key's row and its account's plan (kept up to a second, see
// keycache.go; otherwise one Postgres round trip), then the HMAC in
// constant time.
func (s *Server) authMiddleware(c *gin.Context) {
	if err := s.checkBlocked(c); err != nil {
		writeError(c, s.log, err)
		return
	}
	p, err := s.authenticate(c)
	if err != nil {
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized {
			s.recordAuthFailure(c)
		}
		writeError(c, s.log, err)
		return
	}
	s.uses.mark(p.AccountID, p.ID, time.Now())
	c.Set(ctxPrincipal, p)
	c.Next()
}

func (s *Server) authenticate(c *gin.Context) (*store.Principal, error) {
	h := c.GetHeader("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, &Error{
			Status: http.StatusUnauthorized, Code: "unauthorized",
			Message: "missing API token: send Authorization: Bearer moc_…",
			Header:  http.Header{"Www-Authenticate": {`Bearer realm="mocd"`}},
		}
	}
	keyID, secret, err := apikey.Parse(strings.TrimSpace(token))
	if err != nil {
		return nil, errUnauthorized
	}
	// A kept row whose secret matches is used as it is; any other token
	// is checked against a fresh read (keycache.go), so a rotated key's
	// new token works at once.
	if p, ok := s.keys.get(keyID); ok && apikey.Verify(s.opts.Pepper, secret, p.SecretHash) {
		return checkLive(p)
	}
	read := s.keys.start()
	p, err := store.GetPrincipal(c.Request.Context(), s.opts.Store.DB, keyID)
	unknown := errors.Is(err, store.ErrNotFound)
	if err != nil && !unknown {
		return nil, err
	}
	if !unknown {
		s.keys.put(read, p)
	}
	// An unknown key id is checked against its stand-in hash all the same:
	// the same work as a wrong secret, so timing tells nothing.
	if !apikey.Verify(s.opts.Pepper, secret, p.SecretHash) || unknown {
		return nil, errUnauthorized
	}
	return checkLive(p)
}

// checkLive refuses a revoked or expired key whose secret matched.
func checkLive(p store.Principal) (*store.Principal, error) {
	if p.RevokedAt != nil || (p.ExpiresAt != nil && !time.Now().Before(*p.ExpiresAt)) {
		return nil, errUnauthorized
	}
	return &p, nil
}

// planMiddleware refuses accounts whose plan has no API access.
func (s *Server) planMiddleware(c *gin.Context) {
	if !plan.Of(principal(c).Plan).APIAccess {
		writeError(c, s.log, newError(http.StatusForbidden, "plan_required",
			"the %s plan has no API access; upgrade to pro or business", principal(c).Plan))
		return
	}
	c.Next()
}

// scopeMiddleware refuses a key that lacks the route's scope, naming it.
func (s *Server) scopeMiddleware(scope string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if len(apikey.Missing(principal(c).Scopes, []string{scope})) > 0 {
			writeError(c, s.log, newError(http.StatusForbidden, "insufficient_scope",
				"this API key lacks the %s scope", scope))
			return
		}
		c.Next()
	}
}

// keyUses collects, in memory, each key's last use and its number of
// requests per UTC day; Server.Run flushes both every few seconds (one
// UPDATE, one upsert), so no request waits on either write. A crash loses
// what was collected since the last flush: at most one flush interval of
// last-used times and request counts per api process.
type keyUses struct {
	mu     sync.Mutex
	used   map[string]time.Time
	counts map[usageDay]int64
}

// usageDay is the unit requests are counted in: one key on one UTC day.
type usageDay struct {
	accountID, keyID, day string
}

func newKeyUses() *keyUses {
	return &keyUses{used: map[string]time.Time{}, counts: map[usageDay]int64{}}
}

// mark records one request of a key at t.
func (u *keyUses) mark(accountID, keyID string, t time.Time) {
	d := usageDay{accountID: accountID, keyID: keyID, day: t.UTC().Format(store.DateLayout)}
	u.mu.Lock()
	u.used[keyID] = t
	u.counts[d]++
	u.mu.Unlock()
}

// take hands over what was collected and starts afresh.
func (u *keyUses) take() (map[string]time.Time, map[usageDay]int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	used, counts := u.used, u.counts
	u.used, u.counts = map[string]time.Time{}, map[usageDay]int64{}
	return used, counts
}

// putBack returns last-used times whose flush failed, for the next one.
func (u *keyUses) putBack(m map[string]time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, t := range m {
		if cur, ok := u.used[k]; !ok || cur.Before(t) {
			u.used[k] = t
		}
	}
}

// putBackCounts returns request counts whose flush failed: they are added
// to what was counted meanwhile.
func (u *keyUses) putBackCounts(m map[usageDay]int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for d, n := range m {
		u.counts[d] += n
	}
}
