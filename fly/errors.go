package fly

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Error is a non-2xx answer from the Machines API.
type Error struct {
	Method string
	// Path is below the base URL, for example /v1/apps/a/machines.
	Path       string
	StatusCode int
	// Status is Fly's machine-readable reason ("name_taken",
	// "insufficient_capacity", …) when the answer gave one.
	Status string
	// Message is the answer's message or error, else its text, truncated.
	Message string
	// RequestID is the fly-request-id header, what Fly support asks for.
	RequestID string
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fly: %s %s: %d", e.Method, e.Path, e.StatusCode)
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id " + e.RequestID + ")")
	}
	return b.String()
}

// maxMessage bounds a message taken from a non-JSON body, which may be an
// HTML page from a proxy.
const maxMessage = 512

func newError(method, path string, resp *http.Response, body []byte) *Error {
	e := &Error{
		Method:     method,
		Path:       "/v1" + path,
		StatusCode: resp.StatusCode,
		RequestID:  resp.Header.Get("fly-request-id"),
	}
	var parsed struct {
		Message string `json:"message"`
		Error   string `json:"error"`
		Status  string `json:"status"`
	}
	if json.Unmarshal(body, &parsed) == nil {
		e.Status = parsed.Status
		e.Message = parsed.Message
		if e.Message == "" {
			e.Message = parsed.Error
		}
	}
	if e.Message == "" {
		e.Message = truncate(strings.TrimSpace(string(body)), maxMessage)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// netError is a call that got no usable answer.
type netError struct {
	method, path string
	err          error
	permanent    bool
}

func (e *netError) Error() string {
	return fmt.Sprintf("fly: %s /v1%s: %v", e.method, e.path, e.err)
}

func (e *netError) Unwrap() error { return e.err }

// temporary reports whether sending again may help: the connection was
// refused, reset or cut, or the one try timed out while the caller's context
// still had time.
func (e *netError) temporary() bool {
	// A deadline is not ruled out here: Client.Timeout reports one too, and
	// the retry loop checks the caller's context on its own.
	if e.permanent || errors.Is(e.err, context.Canceled) {
		return false
	}
	if errors.Is(e.err, syscall.ECONNREFUSED) || errors.Is(e.err, syscall.ECONNRESET) ||
		errors.Is(e.err, syscall.EPIPE) || errors.Is(e.err, io.EOF) || errors.Is(e.err, io.ErrUnexpectedEOF) {
		return true
	}
	if ne, ok := errors.AsType[net.Error](e.err); ok && ne.Timeout() {
		return true
	}
	if de, ok := errors.AsType[*net.DNSError](e.err); ok {
		return de.IsTemporary || de.IsTimeout
	}
	if _, ok := errors.AsType[*net.OpError](e.err); ok {
		return true
	}
	// net/http reports a connection the server dropped before answering
	// with an unexported error; its text is all there is to go on.
	return strings.Contains(e.err.Error(), "server closed idle connection")
}

// IsNotFound reports whether err is a 404 from the API.
func IsNotFound(err error) bool {
	return StatusCode(err) == http.StatusNotFound
}

// IsNameTaken reports whether err refuses a name already in use: an app
// name (global across Fly) or a machine name (unique within its app). It
// reads Fly's status "name_taken" and, for answers without one, the
// legacy message flaps also falls back on (flaps.IsNameTakenError).
func IsNameTaken(err error) bool {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return false
	}
	if e.Status != "" {
		return e.Status == "name_taken"
	}
	return strings.Contains(e.Message, "Name has already been taken")
}

// StatusCode answers the HTTP status of an API error, or 0 when err is not
// one (a network failure, a cancelled context).
func StatusCode(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.StatusCode
	}
	return 0
}

// IsRetryable reports whether err is transient: 429, 502, 503, 504 or a
// network failure. A 500 is not: fly-go does not retry it either, and it
// usually means the request itself upset the API.
func IsRetryable(err error) bool {
	if e, ok := errors.AsType[*Error](err); ok {
		switch e.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	if e, ok := errors.AsType[*netError](err); ok {
		return e.temporary()
	}
	return false
}
