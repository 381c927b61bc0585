package client

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"time"
)

// RetryPolicy says how often and how patiently a call is retried. Zero
// fields take the defaults.
//
// Retried: network errors (no complete answer), 429, 502, 503 and 504;
// and 409 idempotency_key_in_use on a retry, which means the client's own
// earlier attempt is still being processed. Never retried: any other 4xx
// (the request itself is wrong or refused, and would be again) and 500 (a
// bug on the server, which a retry would only repeat).
type RetryPolicy struct {
	// MaxRetries is how many times a call is sent again after its first
	// attempt (default 8). Negative disables retries.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff (defaults
	// 250 ms and 20 s). Each wait is drawn at random from the upper half
	// of the current step, so clients that failed together do not retry
	// together.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out
	// (default 2 min); a longer one is returned to the caller as the
	// *APIError it is.
	MaxRetryAfter time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxRetries == 0 {
		p.MaxRetries = 8
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = 250 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 20 * time.Second
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = p.MinBackoff
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 2 * time.Minute
	}
	return p
}

// backoff is the wait before retry number attempt+1: "equal jitter" over
// MinBackoff·2^attempt, capped at MaxBackoff.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	d := p.MinBackoff
	for i := 0; i < attempt && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// decide says whether the error of attempt (0 for the first) is retried,
// and after how long. key is the call's Idempotency-Key ("" for reads).
func (p RetryPolicy) decide(attempt int, err error, key string) (time.Duration, bool) {
	if p.MaxRetries < 0 || attempt >= p.MaxRetries {
		return 0, false
	}
	var netErr *NetworkError
	if errors.As(err, &netErr) {
		return p.backoff(attempt), true
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return 0, false
	}
	switch apiErr.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
	case http.StatusConflict:
		// Our own earlier attempt (cut off on the way back) is still being
		// processed under this key: once it is done, the retry gets its
		// answer replayed. On the first attempt the key is someone else's.
		if attempt == 0 || key == "" || apiErr.Code != "idempotency_key_in_use" {
			return 0, false
		}
	default:
		return 0, false
	}
	wait := p.backoff(attempt)
	if ra := apiErr.RetryAfter; ra > 0 {
		if ra > p.MaxRetryAfter {
			return 0, false
		}
		// Never sooner than the server said; a little later at random, so
		// that throttled clients do not all come back in the same instant.
		wait = ra + rand.N(ra/5+100*time.Millisecond)
	}
	return wait, true
}
