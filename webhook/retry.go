package webhook

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Schedule is the delay before each retry, from the Standard Webhooks
// specification: Schedule[0] after the first attempt failed, and so on. With
// the first attempt that makes 10 attempts over about 3 days, long enough to
// outlast a receiver's weekend outage.
var Schedule = []time.Duration{
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	14 * time.Hour,
	20 * time.Hour,
	24 * time.Hour,
}

// Jitter is the largest fraction by which NextDelay moves a scheduled delay,
// either way. It spreads out retries of the many deliveries that failed
// together when a receiver went down, so they do not all return at once.
const Jitter = 0.2

// MaxRetryAfter caps what a receiver's Retry-After can ask for, so that a
// mistaken or hostile value cannot park a delivery for ever.
const MaxRetryAfter = 24 * time.Hour

// NextDelay returns how long to wait before retry number attempt (1 for the
// first retry, after the initial delivery failed), and false once the
// schedule is exhausted and the delivery should be given up. attempt below 1
// is treated as 1, so a miscounted attempt never retries at once.
//
// The delay is Schedule[attempt-1] moved by up to ±Jitter, using rnd (which
// returns a value in [0, 1); nil means math/rand/v2). When the receiver sent
// Retry-After, the delay is never shorter than retryAfter, capped at
// MaxRetryAfter: a receiver that says when it can take traffic again is
// honoured, but it cannot stretch the retries beyond a day each.
func NextDelay(attempt int, retryAfter time.Duration, rnd func() float64) (time.Duration, bool) {
	attempt = max(attempt, 1)
	if attempt > len(Schedule) {
		return 0, false
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	// Clamped so that a bad rnd cannot push the delay outside ±Jitter.
	r := min(max(rnd(), 0), 1)
	d := time.Duration(float64(Schedule[attempt-1]) * (1 + Jitter*(2*r-1)))
	return max(d, min(retryAfter, MaxRetryAfter)), true
}

// ParseRetryAfter returns the wait a receiver asked for in its Retry-After
// header, given as seconds or as an HTTP date (RFC 9110, section 10.2.3),
// measured from now and capped at MaxRetryAfter. It returns 0 when the header
// is absent, malformed or in the past, so the caller simply follows Schedule.
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseUint(v, 10, 64)
		// Compare in seconds: a huge value would overflow a Duration, and
		// one beyond uint64 is merely a very long wait.
		if err != nil || secs >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}
