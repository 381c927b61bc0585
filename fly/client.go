// Package fly is mocd's client for the Fly Machines REST API
// (https://api.machines.dev/v1). It speaks the wire contract of fly-go's flaps
// package, which the module proxy does not serve here, and only the calls mocd
// needs: apps, machines, wait and leases.
//
// Every method makes one logical call: transient failures (429, 502, 503,
// 504 and network errors such as a refused or reset connection) are retried
// with exponential backoff and full jitter, honouring Retry-After; other
// failures come back at once as an *Error carrying the status code and the
// fly-request-id. A retried create can, after a reset connection, have
// succeeded the first time: callers that must not create twice look before
// they create.
package fly

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBaseURL is the public Machines API.
const DefaultBaseURL = "https://api.machines.dev"

// Options configures a Client. Zero values take the documented defaults.
type Options struct {
	// BaseURL is the API root without /v1; default DefaultBaseURL.
	BaseURL string
	// Token is a Fly API token: a macaroon (fm1r_, fm1a_, fm2_) or an older
	// bearer token; one already prefixed "FlyV1 " is sent as it is.
	Token string
	// HTTPClient defaults to a client without a timeout: calls are bounded by
	// their context, and wait calls hold the connection up to a minute.
	HTTPClient *http.Client
	// MaxRetries is how many times a transient failure is retried; default 4,
	// negative for none.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the pause before a retry; defaults
	// 200ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Logger receives a record for each retry; default discards.
	Logger *slog.Logger
	// CallTimeout bounds one try of a call (a wait gets its own timeout on
	// top); default 30s. Without it a hung connection would hold a worker
	// until the task's own deadline.
	CallTimeout time.Duration
	// AppWait is how long WaitForApp keeps asking for a new app; default a
	// minute, as flaps.WaitForApp.
	AppWait time.Duration
	// Registerer receives the client's metrics (requests by route
	// template, status class and result, latency, retries); nil counts
	// into nothing. Every request is also a client span (OpenTelemetry).
	Registerer prometheus.Registerer
}

// Client calls the Machines API. It is safe for concurrent use.
type Client struct {
	baseURL    string
	authHeader string
	http       *http.Client
	maxRetries int
	minBackoff time.Duration
	maxBackoff time.Duration
	logger     *slog.Logger
	timeout    time.Duration
	appWait    time.Duration
	metrics    *metrics
}

// maxIdleConns is how many idle connections to the Machines API a Client
// keeps: as many as a worker's calls in flight (its task concurrency, its
// wake-ups and its reconciler) can use at once.
const maxIdleConns = 64

// newTransport is http.DefaultTransport keeping maxIdleConns idle
// connections to one host rather than two. The Machines API is one host: a
// worker with 16 operations in flight closed all but two connections after
// each call and dialled again for the next (against Fly, a TCP and TLS
// handshake per call); in make bench's end-to-end profile the dials were 8%
// of the worker's CPU.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxIdleConns
	t.MaxIdleConnsPerHost = maxIdleConns
	return t
}

// New returns a Client for opts.
func New(opts Options) *Client {
	c := &Client{
		baseURL:    strings.TrimRight(opts.BaseURL, "/"),
		authHeader: authorization(opts.Token),
		http:       opts.HTTPClient,
		maxRetries: opts.MaxRetries,
		minBackoff: opts.MinBackoff,
		maxBackoff: opts.MaxBackoff,
		logger:     opts.Logger,
		timeout:    opts.CallTimeout,
		appWait:    opts.AppWait,
		metrics:    newMetrics(opts.Registerer),
	}
	if c.baseURL == "" {
		c.baseURL = DefaultBaseURL
	}
	hc := http.Client{}
	if c.http != nil {
		hc = *c.http
	}
	if hc.Jar == nil {
		// Fly's API answers an app create with an affinity cookie scoped to
		// the app's path, which routes the creator's next calls to the
		// node that already knows the app; flaps keeps a cookie jar for it
		// (fly-go #224). On a copy, so the caller's client is left as it was.
		hc.Jar = newJar()
	}
	if hc.Transport == nil {
		hc.Transport = newTransport()
	}
	hc.Transport = instrument(hc.Transport, c.metrics)
	c.http = &hc
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	if c.appWait <= 0 {
		c.appWait = time.Minute
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = 4
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.minBackoff <= 0 {
		c.minBackoff = 200 * time.Millisecond
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = 5 * time.Second
	}
	c.maxBackoff = max(c.maxBackoff, c.minBackoff)
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// authorization builds the Authorization header value for token as flaps
// does (fly-go tokens.Parse and FlapsHeader): whatever scheme the token was
// written with is stripped; it may be several comma-separated tokens;
// macaroons (fm1r_, fm1a_, fm2_ prefixes, as `fly tokens create` prints
// them, often with "FlyV1 " in front) go alone with the FlyV1 scheme, and
// only a token with no macaroon in it goes as Bearer.
func authorization(token string) string {
	token = stripScheme(token)
	var macaroons, others []string
	for tok := range strings.SplitSeq(token, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		switch pfx, _, _ := strings.Cut(tok, "_"); pfx {
		case "fm1r", "fm1a", "fm2":
			macaroons = append(macaroons, tok)
		default:
			others = append(others, tok)
		}
	}
	switch {
	case len(macaroons) > 0:
		return "FlyV1 " + strings.Join(macaroons, ",")
	case len(others) > 0:
		return "Bearer " + strings.Join(others, ",")
	}
	return ""
}

// stripScheme removes leading "Bearer " and "FlyV1 " schemes, in any case.
func stripScheme(token string) string {
	token = strings.TrimSpace(token)
	for {
		pfx, rest, ok := strings.Cut(token, " ")
		if !ok || (!strings.EqualFold(pfx, "Bearer") && !strings.EqualFold(pfx, "FlyV1")) {
			return token
		}
		token = strings.TrimSpace(rest)
	}
}

// CallOption adjusts one write call.
type CallOption func(*callOptions)

type callOptions struct {
	leaseNonce string
}

// WithLease sends the nonce of a lease held on the machine, without which a
// leased machine refuses writes with 409.
func WithLease(nonce string) CallOption {
	return func(o *callOptions) { o.leaseNonce = nonce }
}

func header(opts []CallOption) http.Header {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.leaseNonce == "" {
		return nil
	}
	return http.Header{"Fly-Machine-Lease-Nonce": {o.leaseNonce}}
}

// call describes one API call; path is below /v1.
type call struct {
	method string
	path   string
	query  url.Values
	in     any
	out    any
	header http.Header
	// hold is how long the API may hold the call on purpose (a wait),
	// added to the per-try timeout.
	hold time.Duration
}

// do performs c with retries. The body is encoded once and re-sent as is.
func (c *Client) do(ctx context.Context, cl call) error {
	var body []byte
	if cl.in != nil {
		var err error
		if body, err = json.Marshal(cl.in); err != nil {
			return fmt.Errorf("fly: encode %s %s: %w", cl.method, cl.path, err)
		}
	}
	target := c.baseURL + "/v1" + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}

	for attempt := 0; ; attempt++ {
		retryAfter, err := c.try(ctx, cl, target, body)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			// The call failed on its own but the caller has gone too: say both.
			return fmt.Errorf("%w; last attempt: %w", ctx.Err(), err)
		}
		if ctx.Err() != nil || attempt >= c.maxRetries || !IsRetryable(err) {
			return err
		}
		wait := c.backoff(attempt)
		if retryAfter > 0 {
			wait = retryAfter
		}
		// Sleeping past the caller's deadline would only turn a clear error
		// into a context one.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err
		}
		c.metrics.retried(cl.method, cl.path)
		c.logger.WarnContext(ctx, "fly: retrying", slog.String("method", cl.method), slog.String("path", cl.path),
			slog.Int("attempt", attempt+1), slog.Duration("wait", wait), slog.Any("error", err))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w; last attempt: %w", ctx.Err(), err)
		}
	}
}

// backoff is exponential with full jitter: a random pause in [min, cap] where
// cap doubles with each attempt up to MaxBackoff.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.maxBackoff
	if attempt < 30 {
		ceiling = min(c.minBackoff<<attempt, c.maxBackoff)
	}
	if ceiling <= c.minBackoff {
		return c.minBackoff
	}
	return c.minBackoff + rand.N(ceiling-c.minBackoff+1)
}

// try sends one request; it answers the Retry-After of a failed answer.
func (c *Client) try(ctx context.Context, cl call, target string, body []byte) (time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout+cl.hold)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, cl.method, target, rd)
	if err != nil {
		return 0, fmt.Errorf("fly: %s %s: %w", cl.method, cl.path, err)
	}
	for k, vs := range cl.header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "mocd")
	if c.authHeader != "" {
		req.Header.Set("Authorization", c.authHeader)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return 0, &netError{method: cl.method, path: cl.path, err: err}
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return retryAfter(resp.Header.Get("Retry-After")), newError(cl.method, cl.path, resp, raw)
	}
	if cl.out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, nil
	}
	if err := decodeAnswer(resp.Body, cl.out); err != nil {
		return 0, &netError{method: cl.method, path: cl.path, err: fmt.Errorf("decode answer: %w", err), permanent: true}
	}
	return 0, nil
}

// decodeAnswer reads a whole answer and decodes it into out with go-json,
// which fills out as encoding/json does (TestAnswersDecodeAsEncodingJSON)
// for a quarter of the CPU (BenchmarkDecodeMachine: 61 µs against 15 µs
// for a machine as Fly renders it): decoding machines was an eighth of a
// worker's CPU per operation (issue 18). An answer with anything after
// its one JSON value is refused, which encoding/json's Decoder let pass.
func decodeAnswer(body io.Reader, out any) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	return gojson.Unmarshal(raw, out)
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// newJar answers an empty cookie jar; cookiejar.New fails only on bad
// options, and it gets none.
func newJar() http.CookieJar {
	jar, err := cookiejar.New(nil)
	if err != nil {
		panic(fmt.Sprintf("fly: cookie jar: %v", err))
	}
	return jar
}

func pathApp(app string) string {
	return "/apps/" + url.PathEscape(app)
}

func pathMachine(app, id string) string {
	return pathApp(app) + "/machines/" + url.PathEscape(id)
}

// BaseURL answers the API root the client calls, without /v1.
func (c *Client) BaseURL() string { return c.baseURL }
