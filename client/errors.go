package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// APIError is a non-2xx answer of the API: the status is the source of
// truth, Code tells cases of one status apart ("not_found",
// "subdomain_taken", "rate_limited", …), Message is for people. RequestID
// is the answer's X-Request-Id: quote it to support.
type APIError struct {
	StatusCode int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"error"`
	RequestID  string `json:"-"`
	// RetryAfter is the answer's Retry-After (429, 503), zero if absent.
	RetryAfter time.Duration `json:"-"`
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "moc: %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	return b.String()
}

// newAPIError reads an error answer. A body that is not the API's
// {"error","code"} (a proxy's HTML page, say) keeps the status and the
// start of the body as the message.
func newAPIError(hr *http.Response, body []byte) *APIError {
	e := &APIError{StatusCode: hr.StatusCode, RequestID: hr.Header.Get("X-Request-Id")}
	if err := json.Unmarshal(body, e); err != nil || (e.Code == "" && e.Message == "") {
		e.Code, e.Message = "", http.StatusText(hr.StatusCode)
		if s := strings.TrimSpace(string(body)); s != "" {
			if len(s) > 200 {
				s = s[:200] + "…"
			}
			e.Message += ": " + s
		}
	}
	if ra := hr.Header.Get("Retry-After"); ra != "" {
		e.RetryAfter = parseRetryAfter(ra, time.Now())
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// StatusOf answers the HTTP status of an *APIError in err's chain, or 0.
func StatusOf(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// CodeOf answers the API's error code of an *APIError in err's chain, or "".
func CodeOf(err error) string {
	var e *APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// NetworkError is a call that got no complete answer: the connection was
// refused or cut, or the answer was truncated. The server may or may not
// have acted on it; retrying with the same Idempotency-Key is safe, and the
// client has done so already as often as its policy allows.
type NetworkError struct {
	Method, Path string
	Err          error
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("moc: %s %s: %v", e.Method, e.Path, e.Err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// OperationFailedError is what Wait returns when the operation ended
// without succeeding: Operation.Status is "failed" (Operation.Error says
// why) or "cancelled".
type OperationFailedError struct {
	Operation *Operation
}

func (e *OperationFailedError) Error() string {
	op := e.Operation
	if op.Error != nil {
		return fmt.Sprintf("moc: operation %s (%s) %s: %s: %s", op.ID, op.Type, op.Status, op.Error.Code, op.Error.Message)
	}
	return fmt.Sprintf("moc: operation %s (%s) %s", op.ID, op.Type, op.Status)
}
