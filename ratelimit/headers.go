package ratelimit

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SetHeaders writes r to h as API.md asks:
//
//   - RateLimit-Policy lists every limit, and RateLimit the binding one, in the
//     structured-field syntax of draft-ietf-httpapi-ratelimit-headers (08/09):
//     `"key-minute";q=120;w=60, ...` and `"key-minute";r=119;t=1`.
//   - X-RateLimit-Limit, -Remaining and -Reset (epoch seconds) describe the
//     binding limit for clients that only read those.
//   - On refusal, Retry-After in whole seconds, at least 1.
//
// Every duration is rounded up: a client that waits what it is told never
// comes back early.
func (r Result) SetHeaders(h http.Header) {
	if len(r.Limits) == 0 {
		return
	}
	var b strings.Builder
	for i, l := range r.Limits {
		if i > 0 {
			b.WriteString(", ")
		}
		writeSFString(&b, l.Name)
		b.WriteString(";q=")
		b.WriteString(strconv.Itoa(l.Rate))
		b.WriteString(";w=")
		b.WriteString(strconv.FormatInt(ceilSeconds(l.Period), 10))
	}
	h.Set("RateLimit-Policy", b.String())

	bind := r.Binding
	b.Reset()
	writeSFString(&b, bind.Name)
	b.WriteString(";r=")
	b.WriteString(strconv.Itoa(bind.Remaining))
	b.WriteString(";t=")
	b.WriteString(strconv.FormatInt(ceilSeconds(bind.ResetAfter), 10))
	h.Set("RateLimit", b.String())

	h.Set("X-RateLimit-Limit", strconv.Itoa(bind.Rate))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(bind.Remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilUnix(r.Now.Add(bind.ResetAfter)), 10))

	if !r.Allowed {
		h.Set("Retry-After", strconv.FormatInt(r.RetryAfterSeconds(), 10))
	}
}

// RetryAfterSeconds is r.RetryAfter as the Retry-After header states it:
// whole seconds, rounded up, at least 1.
func (r Result) RetryAfterSeconds() int64 { return max(1, ceilSeconds(r.RetryAfter)) }

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// writeSFString writes s as an RFC 8941 sf-string: quoted, with \ and "
// escaped. Policy names are ours and plain, but a header must stay parseable
// whatever a name holds, so other bytes outside printable ASCII become '?'.
func writeSFString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
