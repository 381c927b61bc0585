// Package client is the Go SDK of the MyOpenClaw Developer API: typed calls
// for every route of the API's OpenAPI document, written so that a script
// or a CI pipeline needs nothing else.
//
//   - Every POST, PUT, PATCH and DELETE carries an Idempotency-Key (the
//     caller's, or a fresh random one) that stays the same across the
//     client's own retries, so a retried create never creates twice.
//   - Network errors, 429, 502, 503 and 504 are retried with exponential
//     backoff and jitter, never sooner than the server's Retry-After; other
//     4xx and 500 are returned at once as *APIError.
//   - Wait follows an operation with GET /operations/{id}/wait (one
//     long-poll), falling back to polling against a server without it, and
//     returns *OperationFailedError when the operation failed or was
//     cancelled.
//   - AllXxx methods are iterators (iter.Seq2) over every cursor page.
//   - VerifyWebhook checks Standard Webhooks signatures for receivers.
//
// The module has no dependency outside the standard library:
//
//	c, err := client.New(os.Getenv("MOC_TOKEN"))
//	op, err := c.CreateInstance(ctx, client.CreateInstanceRequest{Subdomain: "my-claw"})
//	op, err = c.Wait(ctx, op.ID)
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
)

// Version is the SDK's version, sent in the User-Agent.
const Version = "0.1.0"

// DefaultBaseURL is the production API, as the public documentation uses it.
const DefaultBaseURL = "https://www.myopenclaw.cloud"

// apiPrefix is the base path of every API route.
const apiPrefix = "/api/v1"

// Client calls the API. It is safe for concurrent use; make one and keep it.
type Client struct {
	base      *url.URL // scheme and host (and a path prefix, if any), without /api/v1
	token     string
	http      *http.Client
	userAgent string
	retry     RetryPolicy
	// attemptTimeout bounds one attempt of an ordinary call; a wait call
	// is given its long-poll timeout on top.
	attemptTimeout time.Duration
	// noWaitRoute is set once a server has shown it lacks
	// GET /operations/{id}/wait, so that Wait polls at once next time.
	noWaitRoute atomic.Bool
}

// Option configures a Client.
type Option func(*Client) error

// WithBaseURL sets the API's address, with or without the /api/v1 suffix:
// "https://www.myopenclaw.cloud", "http://127.0.0.1:8080/api/v1".
func WithBaseURL(raw string) Option {
	return func(c *Client) error {
		u, err := parseBaseURL(raw)
		if err != nil {
			return err
		}
		c.base = u
		return nil
	}
}

// WithHTTPClient sets the http.Client (its transport, proxies, TLS). Its
// Timeout should be zero or longer than a wait's long-poll (55 s); the SDK
// bounds each attempt itself.
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) error {
		if h == nil {
			return errors.New("client: nil http.Client")
		}
		c.http = h
		return nil
	}
}

// WithUserAgent puts product (such as "my-deployer/1.2") before the SDK's
// own User-Agent, as RFC 9110 lists products most significant first.
func WithUserAgent(product string) Option {
	return func(c *Client) error {
		if product = strings.TrimSpace(product); product != "" {
			c.userAgent = product + " " + c.userAgent
		}
		return nil
	}
}

// WithRetryPolicy replaces the default retry policy.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *Client) error {
		c.retry = p.withDefaults()
		return nil
	}
}

// WithAttemptTimeout bounds each attempt of an ordinary call (default 60 s).
// The whole call, retries included, is bounded by its context.
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return errors.New("client: attempt timeout must be positive")
		}
		c.attemptTimeout = d
		return nil
	}
}

// New returns a Client that authenticates with token
// ("moc_<key-id>_<secret>"). The routes that need no token (health, the
// OpenAPI document) work with an empty one.
func New(token string, opts ...Option) (*Client, error) {
	base, _ := parseBaseURL(DefaultBaseURL)
	c := &Client{
		base:           base,
		token:          strings.TrimSpace(token),
		http:           &http.Client{},
		userAgent:      fmt.Sprintf("moc-go/%s (%s; %s/%s)", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH),
		retry:          RetryPolicy{}.withDefaults(),
		attemptTimeout: 60 * time.Second,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// BaseURL answers the API's address the client uses, without /api/v1.
func (c *Client) BaseURL() string { return c.base.String() }

// UserAgent answers the User-Agent the client sends.
func (c *Client) UserAgent() string { return c.userAgent }

// parseBaseURL accepts an absolute http(s) URL, with or without /api/v1.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("client: base URL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host[/api/v1]", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("client: base URL %q: no query, fragment or credentials", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, apiPrefix)
	u.Path = strings.TrimRight(p, "/")
	u.RawPath = ""
	return u, nil
}

// CallOption adjusts one call.
type CallOption func(*callOptions)

type callOptions struct {
	idempotencyKey string
	requestID      string
}

// WithIdempotencyKey sends key as the call's Idempotency-Key instead of a
// random one: the same key on a later call (a re-run of a CI job, say) gets
// the first call's answer back instead of doing the work twice.
func WithIdempotencyKey(key string) CallOption {
	return func(o *callOptions) { o.idempotencyKey = key }
}

// WithRequestID sends id as X-Request-Id; the server echoes it and logs it.
func WithRequestID(id string) CallOption {
	return func(o *callOptions) { o.requestID = id }
}

// request is one logical call, sent once or more.
type request struct {
	method string
	path   string // from the root: /api/v1/… or /healthz
	query  url.Values
	body   any
	opts   []CallOption
	// longPoll is extra time the server may hold the answer (wait routes).
	longPoll time.Duration
	// stream leaves the body open for the caller (event streams); the
	// caller closes it.
	stream bool
	// header is sent as is (Last-Event-ID).
	header http.Header
}

// response is a successful answer: a 2xx, its headers and its body.
type response struct {
	status int
	header http.Header
	body   []byte
	// stream is the open body of a streaming call.
	stream io.ReadCloser
}

// do sends r, retrying as the policy says, and answers the first 2xx or the
// last error. A non-2xx answer is an *APIError.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var co callOptions
	for _, o := range r.opts {
		o(&co)
	}
	var body []byte
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("client: encode %s %s: %w", r.method, r.path, err)
		}
		body = b
	}
	// One key for the whole call: every retry below sends the same one,
	// which is what makes retrying a POST safe.
	key := co.idempotencyKey
	if key == "" && r.method != http.MethodGet && r.method != http.MethodHead {
		key = newIdempotencyKey()
	}
	u := *c.base
	u.Path = c.base.Path + r.path
	u.RawQuery = r.query.Encode()

	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, r, u.String(), body, key, co.requestID)
		if err == nil {
			return resp, nil
		}
		wait, retry := c.retry.decide(attempt, err, key)
		if !retry || ctx.Err() != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// The context would end before the retry could be sent: the
			// caller learns the real reason now rather than a deadline later.
			return nil, err
		}
		if serr := sleepCtx(ctx, wait); serr != nil {
			return nil, err
		}
	}
}

// once sends one attempt.
func (c *Client) once(ctx context.Context, r request, u string, body []byte, key, requestID string) (*response, error) {
	actx, cancel := context.WithTimeout(ctx, c.attemptTimeout+r.longPoll)
	var headersTimer *time.Timer
	if r.stream {
		// A stream lasts as long as ctx; only its answer's headers are
		// bounded by the attempt timeout (the reader watches the rest).
		actx, cancel = context.WithCancel(ctx)
		headersTimer = time.AfterFunc(c.attemptTimeout, cancel)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, u, rd)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if r.stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	hr, err := c.http.Do(req)
	if headersTimer != nil {
		headersTimer.Stop()
	}
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &NetworkError{Method: r.method, Path: r.path, Err: err}
	}
	if r.stream && hr.StatusCode/100 == 2 {
		// The caller reads the stream; closing it ends the attempt.
		return &response{status: hr.StatusCode, header: hr.Header, stream: cancelOnClose{hr.Body, cancel}}, nil
	}
	defer cancel()
	defer hr.Body.Close()
	b, err := io.ReadAll(io.LimitReader(hr.Body, 64<<20))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The answer was cut: as unknown as a refused connection, and as
		// safe to retry with the same key.
		return nil, &NetworkError{Method: r.method, Path: r.path, Err: err}
	}
	if hr.StatusCode/100 != 2 {
		return nil, newAPIError(hr, b)
	}
	return &response{status: hr.StatusCode, header: hr.Header, body: b}, nil
}

// cancelOnClose releases an attempt's context when its stream is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// call sends r and decodes a JSON answer into out (when out is not nil).
func (c *Client) call(ctx context.Context, r request, out any) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	if out == nil || len(resp.body) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return fmt.Errorf("client: decode the answer to %s %s: %w", r.method, r.path, err)
	}
	return nil
}

// newIdempotencyKey is a random UUID (version 4): 122 random bits, in the
// form most idempotency-key implementations expect.
func newIdempotencyKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+
		// crashes instead); a fixed key here would be worse than a panic.
		panic("client: crypto/rand: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// NewIdempotencyKey answers a fresh random key, for callers who want to
// record the key they send (and send it again after a crash).
func NewIdempotencyKey() string { return newIdempotencyKey() }

// pathOf joins escaped segments under /api/v1.
func pathOf(segments ...string) string {
	var b strings.Builder
	b.WriteString(apiPrefix)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
