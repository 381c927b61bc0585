package api

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/myopenclaw/mocd/ratelimit"
)

// rateLimitMiddleware spends one request of the key's per-minute and
// per-hour limits and of its account's ceiling, in one Redis round trip,
// and sets the rate-limit headers on every authenticated answer. When
// Redis cannot answer within the limiter's timeout the request is refused
// (fail closed) before anything is done.
func (s *Server) rateLimitMiddleware(c *gin.Context) {
	p := principal(c)
	res, err := s.opts.Limiter.Allow(c.Request.Context(), ratelimit.ForPlan(p.Plan, p.ID, p.AccountID))
	if err != nil {
		if errors.Is(err, ratelimit.ErrUnavailable) {
			s.counters.unavailable.Inc()
		}
		writeError(c, s.log, errLimiterUnavailable(err))
		return
	}
	res.SetHeaders(c.Writer.Header())
	c.Set(ctxRateLimit, res)
	if !res.Allowed {
		s.counters.refusedBy(res.Binding.Name)
		writeError(c, s.log, errRateLimited(res))
		return
	}
	c.Next()
}

func errRateLimited(res ratelimit.Result) *Error {
	return &Error{
		Status:  http.StatusTooManyRequests,
		Code:    "rate_limited",
		Message: "rate limit exceeded (" + res.Binding.Name + "); retry after " + strconv.FormatInt(res.RetryAfterSeconds(), 10) + " s",
		Header:  http.Header{"Retry-After": {strconv.FormatInt(res.RetryAfterSeconds(), 10)}},
	}
}

// errLimiterUnavailable is the fail-closed answer. Retry-After is short:
// the limiter recovers by itself as soon as Redis answers again.
func errLimiterUnavailable(err error) error {
	if !errors.Is(err, ratelimit.ErrUnavailable) {
		return err
	}
	return &Error{
		Status:  http.StatusServiceUnavailable,
		Code:    "rate_limiter_unavailable",
		Message: "the rate limiter is unavailable; nothing was done, retry shortly",
		Header:  http.Header{"Retry-After": {"1"}},
	}
}

// authFailures limits failed authentications per client address so that a
// flood of bad tokens cannot exhaust the database. Each failure spends from
// a shared per-address bucket in Redis; once Redis says the bucket is
// empty, this replica remembers the address until the bucket refills and
// refuses it before any database lookup, without a Redis round trip.
type authFailures struct {
	mu      sync.Mutex
	blocked map[string]time.Time
}

func newAuthFailures() *authFailures { return &authFailures{blocked: map[string]time.Time{}} }

// blockedFor says how long ip is still refused (0 if not).
func (a *authFailures) blockedFor(ip string, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.blocked[ip]
	if !ok {
		return 0
	}
	if !now.Before(until) {
		delete(a.blocked, ip)
		return 0
	}
	return until.Sub(now)
}

func (a *authFailures) block(ip string, until time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.blocked) > 100_000 { // bound memory under a spoofing flood
		now := time.Now()
		for k, u := range a.blocked {
			if !now.Before(u) {
				delete(a.blocked, k)
			}
		}
	}
	a.blocked[ip] = until
}

// checkBlocked refuses an address whose failed authentications exhausted
// its allowance.
func (s *Server) checkBlocked(c *gin.Context) error {
	d := s.authFails.blockedFor(c.ClientIP(), time.Now())
	if d <= 0 {
		return nil
	}
	secs := int64((d + time.Second - 1) / time.Second)
	s.counters.refusedBy(ratelimit.AddressMinute)
	return &Error{
		Status:  http.StatusTooManyRequests,
		Code:    "rate_limited",
		Message: "too many failed authentications from this address; retry after " + strconv.FormatInt(secs, 10) + " s",
		Header:  http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}},
	}
}

// recordAuthFailure spends one failure of the client's address. Errors are
// ignored: the 401 stands either way.
func (s *Server) recordAuthFailure(c *gin.Context) {
	if s.opts.Limiter == nil {
		return
	}
	ip := c.ClientIP()
	limits := ratelimit.ForAddress(ip)
	if s.opts.FailedAuthsPerMinute > 0 {
		limits[0].Rate = s.opts.FailedAuthsPerMinute
	}
	res, err := s.opts.Limiter.Allow(c.Request.Context(), limits)
	if err == nil && !res.Allowed {
		s.authFails.block(ip, time.Now().Add(res.RetryAfter))
	}
}
