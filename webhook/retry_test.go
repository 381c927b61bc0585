package webhook_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/myopenclaw/mocd/webhook"
)

func fixed(r float64) func() float64 { return func() float64 { return r } }

func TestNextDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		attempt    int
		retryAfter time.Duration
		rnd        func() float64
		want       time.Duration
		wantOK     bool
	}{
		{name: "first retry, no jitter", attempt: 1, rnd: fixed(0.5), want: 5 * time.Second, wantOK: true},
		{name: "first retry, lowest jitter", attempt: 1, rnd: fixed(0), want: 4 * time.Second, wantOK: true},
		{name: "first retry, highest jitter", attempt: 1, rnd: fixed(1), want: 6 * time.Second, wantOK: true},
		{name: "second retry", attempt: 2, rnd: fixed(0.5), want: 5 * time.Minute, wantOK: true},
		{name: "fourth retry", attempt: 4, rnd: fixed(0.5), want: 2 * time.Hour, wantOK: true},
		{name: "last retry", attempt: 9, rnd: fixed(0.5), want: 24 * time.Hour, wantOK: true},
		{name: "exhausted", attempt: 10, rnd: fixed(0.5), wantOK: false},
		{name: "zero is the first retry", attempt: 0, rnd: fixed(0.5), want: 5 * time.Second, wantOK: true},
		{name: "rnd out of range is clamped", attempt: 1, rnd: fixed(7), want: 6 * time.Second, wantOK: true},
		{name: "retry-after is a floor", attempt: 1, retryAfter: time.Minute, rnd: fixed(0.5), want: time.Minute, wantOK: true},
		{name: "shorter retry-after changes nothing", attempt: 3, retryAfter: time.Minute, rnd: fixed(0.5), want: 30 * time.Minute, wantOK: true},
		{name: "retry-after capped at 24h", attempt: 1, retryAfter: 72 * time.Hour, rnd: fixed(0.5), want: 24 * time.Hour, wantOK: true},
		{name: "negative retry-after ignored", attempt: 1, retryAfter: -time.Hour, rnd: fixed(0.5), want: 5 * time.Second, wantOK: true},
		{name: "retry-after does not revive exhausted", attempt: 10, retryAfter: time.Minute, rnd: fixed(0.5), wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := webhook.NextDelay(tt.attempt, tt.retryAfter, tt.rnd)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("NextDelay(%d, %s) = %s, %v; want %s, %v", tt.attempt, tt.retryAfter, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestNextDelayJitterBounds(t *testing.T) {
	t.Parallel()
	for attempt, base := range webhook.Schedule {
		lo := time.Duration(float64(base) * (1 - webhook.Jitter))
		hi := time.Duration(float64(base) * (1 + webhook.Jitter))
		seen := map[time.Duration]bool{}
		for range 200 {
			d, ok := webhook.NextDelay(attempt+1, 0, nil) // the real random source
			if !ok || d < lo || d > hi {
				t.Fatalf("attempt %d: %s, %v; want within [%s, %s]", attempt+1, d, ok, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("attempt %d: only %d distinct delays in 200: not jittered", attempt+1, len(seen))
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "absent", value: "", want: 0},
		{name: "seconds", value: "120", want: 2 * time.Minute},
		{name: "seconds with spaces", value: " 30 ", want: 30 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative", value: "-5", want: 0},
		{name: "fraction", value: "1.5", want: 0},
		{name: "huge is capped", value: "99999999999999999999", want: webhook.MaxRetryAfter},
		{name: "http date", value: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "date in the past", value: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{name: "date far ahead is capped", value: now.Add(30 * 24 * time.Hour).Format(http.TimeFormat), want: webhook.MaxRetryAfter},
		{name: "garbage", value: "soon", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.value != "" {
				h.Set("Retry-After", tt.value)
			}
			if got := webhook.ParseRetryAfter(h, now); got != tt.want {
				t.Fatalf("ParseRetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
			}
		})
	}
}
