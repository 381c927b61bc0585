package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
	"github.com/myopenclaw/mocd/webhook"
)

// Webhook delivery (API.md, Webhooks). Each attempt of a delivery is one
// Asynq task on the webhooks queue, served by an Asynq server of its own so
// that receivers, however slow, never hold a slot lifecycle work needs.
// Postgres says where a delivery stands: an attempt is claimed there
// before the request goes out and recorded there after, and the next
// attempt's task is enqueued only after that record commits. The relay
// repairs every gap a crash can leave.

// Defaults of WebhookOptions.
const (
	// DefaultWebhookTimeout is the Standard Webhooks timeout of one attempt.
	DefaultWebhookTimeout = 15 * time.Second
	// DefaultWebhookConcurrency is how many attempts one worker makes at
	// once. Attempts mostly wait on receivers, so it is generous.
	DefaultWebhookConcurrency = 50
	// DefaultWebhookPerEndpoint is how many attempts to one slow endpoint
	// one worker makes at once: a hung receiver holds at most that many
	// slots, and its other deliveries wait in Redis instead of taking more.
	// An endpoint whose last attempt answered within SlowAttempt is not
	// capped, so bursts to healthy receivers go at full speed.
	DefaultWebhookPerEndpoint = 10
	// DefaultWebhookGrace is how long past due a pending delivery may be
	// before the relay assumes its task is lost and queues it again.
	DefaultWebhookGrace = 5 * time.Second
	// SlowAttempt: an endpoint whose last attempt took longer, or that
	// this worker has not heard from yet, is held to PerEndpoint.
	SlowAttempt = time.Second
)

// UserAgent is the User-Agent of every delivery.
const UserAgent = "mocd-webhooks/1"

// maxResponseBody is how much of a receiver's answer an attempt records.
const maxResponseBody = 1024

// ReasonGone is the disabled_reason of an endpoint whose receiver answered
// 410 Gone: the receiver says it will never want these events again.
const ReasonGone = "receiver answered 410 Gone"

// WebhookOptions configure webhook delivery.
type WebhookOptions struct {
	// SecretBox opens the endpoints' signing secrets (MOC_SECRET_KEY);
	// without it no delivery can be signed, and deliveries wait.
	SecretBox *webhook.SecretBox
	// AllowPrivate lets deliveries reach private, loopback and link-local
	// addresses: development and tests only.
	AllowPrivate bool
	// Schedule is the delay before each retry, without jitter; nil means
	// webhook.Schedule with its jitter. Tests shorten it.
	Schedule []time.Duration
	// Timeout of one attempt; default DefaultWebhookTimeout.
	Timeout time.Duration
	// Concurrency, PerEndpoint and Grace: see the defaults above.
	Concurrency int
	PerEndpoint int
	Grace       time.Duration
}

// deliverer makes delivery attempts and repairs lost ones. It has its own
// dependencies: it shares the worker's Postgres, Redis and queues, and
// nothing else of it.
type deliverer struct {
	st      *store.Store
	redis   asynq.RedisConnOpt
	queue   jobs.Enqueuer
	insp    jobs.Inspector
	log     *slog.Logger
	metrics *metrics
	opts    WebhookOptions
	client  *http.Client
	mux     *asynq.ServeMux
	// poll and shutdown configure its Asynq server as the worker's.
	poll, shutdown time.Duration

	mu        sync.Mutex
	endpoints map[string]*endpointLoad
}

// endpointLoad is what this worker knows of one endpoint.
type endpointLoad struct {
	inFlight int
	// last is the duration of the last attempt that ended; zero until one
	// has.
	last     time.Duration
	lastSeen time.Time
}

// newDeliverer sets up webhook delivery for worker w: its handler, served
// by start, and relay, which every relay pass of w runs.
func newDeliverer(w *Worker, o WebhookOptions) *deliverer {
	if o.Timeout <= 0 {
		o.Timeout = DefaultWebhookTimeout
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultWebhookConcurrency
	}
	if o.PerEndpoint <= 0 {
		o.PerEndpoint = DefaultWebhookPerEndpoint
	}
	if o.Grace <= 0 {
		o.Grace = DefaultWebhookGrace
	}
	d := &deliverer{
		st:        w.st,
		redis:     w.opts.Redis,
		queue:     w.client,
		insp:      w.insp,
		log:       w.log,
		metrics:   w.metrics,
		poll:      w.opts.PollInterval,
		shutdown:  w.opts.ShutdownTimeout,
		opts:      o,
		client:    webhook.NewHTTPClient(o.AllowPrivate, o.Timeout),
		mux:       asynq.NewServeMux(),
		endpoints: map[string]*endpointLoad{},
	}
	d.mux.HandleFunc(jobs.TypeWebhookDelivery, d.handle)
	return d
}

// start serves the webhooks queue until Shutdown.
func (d *deliverer) start(ctx context.Context) (*asynq.Server, error) {
	srv := asynq.NewServer(d.redis, asynq.Config{
		Concurrency:       d.opts.Concurrency,
		Queues:            map[string]int{jobs.QueueWebhooks: 1},
		TaskCheckInterval: d.poll,
		// Every delayed delivery task waits at least a second (a busy
		// endpoint's wait, a retry of the schedule), and Asynq keeps its
		// time in whole seconds: looking for due ones every poll made 20 of
		// an idle worker's 61 Redis calls a second, for nothing.
		DelayedTaskCheckInterval: max(d.poll, time.Second),
		ShutdownTimeout:          d.shutdown,
		RetryDelayFunc:           retryDelivery,
		IsFailure:                func(err error) bool { return !errors.As(err, new(*endpointBusy)) },
		Logger:                   asynqLogger{d.log.With("component", "asynq-webhooks")},
		LogLevel:                 asynq.WarnLevel,
		BaseContext:              func() context.Context { return context.WithoutCancel(ctx) },
	})
	if err := srv.Start(traced(d.mux)); err != nil {
		return nil, fmt.Errorf("start webhook delivery server: %w", err)
	}
	return srv, nil
}

// endpointBusy puts an attempt off without making it: its endpoint is slow
// and already holds its share of this worker's slots. It is not a failure
// (Config.IsFailure), so it never uses up the task's Asynq retries.
type endpointBusy struct{ wait time.Duration }

func (e *endpointBusy) Error() string {
	return fmt.Sprintf("endpoint busy; trying again in %s", e.wait.Round(time.Millisecond))
}

// retryDelivery is when Asynq runs a delivery task again: after the wait
// of a busy endpoint, or with Asynq's backoff when Postgres or Redis failed
// (never for the receiver's failures: those are recorded, and the next
// attempt follows the Standard Webhooks schedule as a task of its own).
func retryDelivery(n int, err error, t *asynq.Task) time.Duration {
	var busy *endpointBusy
	if errors.As(err, &busy) {
		return busy.wait
	}
	return asynq.DefaultRetryDelayFunc(n, err, t)
}

// maxAttempts is the first attempt plus one per retry of the schedule.
func (d *deliverer) maxAttempts() int {
	if d.opts.Schedule != nil {
		return len(d.opts.Schedule) + 1
	}
	return len(webhook.Schedule) + 1
}

// nextDelay is the wait before retry number retry (1 after the first
// attempt), and false once the schedule is exhausted.
func (d *deliverer) nextDelay(retry int, retryAfter time.Duration) (time.Duration, bool) {
	if d.opts.Schedule == nil {
		return webhook.NextDelay(retry, retryAfter, nil)
	}
	if retry < 1 || retry > len(d.opts.Schedule) {
		return 0, false
	}
	return max(d.opts.Schedule[retry-1], min(retryAfter, webhook.MaxRetryAfter)), true
}

// lease is how long a claimed attempt may run before the relay takes it
// for lost: Asynq cancels the task after jobs.DeliveryTimeout, and its
// outcome is recorded within seconds after that.
func (d *deliverer) lease() time.Duration {
	return jobs.DeliveryTimeout + 15*time.Second
}

// handle makes one attempt of a delivery. Whatever happens to the
// receiver, it returns nil once the outcome is recorded; an error means
// the endpoint is busy, or Postgres or the configuration failed, and Asynq
// (or, after its retries, the relay) runs the task again.
func (d *deliverer) handle(ctx context.Context, t *asynq.Task) error {
	var p jobs.DeliveryPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.DeliveryID == "" {
		return fmt.Errorf("webhook delivery task with payload %q: %w", t.Payload(), asynq.SkipRetry)
	}
	db := d.st.DB
	tgt, err := store.WebhookDeliveryTarget(ctx, db, p.DeliveryID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // its endpoint was deleted, and the delivery with it
	}
	if err != nil {
		return fmt.Errorf("load delivery %s: %w", p.DeliveryID, err)
	}
	if tgt.Status != store.DeliveryPending || tgt.Attempts != p.Attempt {
		return nil // finished, or this attempt was made by another task
	}
	if early := time.Until(tgt.NextAttemptAt); early > 0 {
		// Asynq keeps scheduled times in whole seconds, so a retry may
		// start up to a second early; a receiver's Retry-After is a promise.
		if early > 2*time.Second {
			return nil // not this attempt's time: the relay queues it when due
		}
		select {
		case <-time.After(early):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !tgt.Enabled {
		reason := "the endpoint is disabled"
		if tgt.DisabledReason != nil {
			reason += ": " + *tgt.DisabledReason
		}
		return d.fail(ctx, tgt.ID, reason, abandonDisabled)
	}
	if p.Attempt >= d.maxAttempts() {
		// Only after a worker died during the last attempt.
		return d.fail(ctx, tgt.ID, fmt.Sprintf("gave up after %d attempts", p.Attempt), abandonExhausted)
	}
	if d.opts.SecretBox == nil {
		return errors.New("webhook delivery: no SecretBox configured (MOC_SECRET_KEY); deliveries wait until there is one")
	}
	secret, err := d.opts.SecretBox.Open(tgt.SecretSealed)
	if err != nil {
		return fmt.Errorf("open the signing secret of endpoint %s (is MOC_SECRET_KEY the key it was sealed with?): %w", tgt.EndpointID, err)
	}
	if wait, ok := d.acquire(tgt.EndpointID); !ok {
		// The endpoint is slow and holds its share of this worker's
		// slots: Asynq runs this task again after wait.
		return &endpointBusy{wait: wait}
	}
	if err := store.ClaimWebhookAttempt(ctx, db, tgt.ID, p.Attempt, d.lease()); err != nil {
		d.release(tgt.EndpointID, 0)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("claim attempt %d of delivery %s: %w", p.Attempt+1, tgt.ID, err)
	}

	res := d.send(ctx, tgt, secret)
	d.release(tgt.EndpointID, max(res.latency, time.Millisecond))
	out, gone := d.outcome(p.Attempt+1, res)
	// The attempt happened: record it even if the worker is stopping.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err = d.st.WithTx(rctx, func(tx *sqlx.Tx) error {
		if err := store.RecordWebhookAttempt(rctx, tx, tgt.ID, out); err != nil {
			return err
		}
		if gone {
			return store.DisableWebhookEndpoint(rctx, tx, tgt.EndpointID, ReasonGone)
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil // its lease ran out and the relay moved on
	}
	if err != nil {
		return fmt.Errorf("record attempt %d of delivery %s: %w", out.Attempt, tgt.ID, err)
	}
	d.metrics.attempted(attemptOutcome(out, gone), out.Attempt, res.latency)
	if gone {
		d.metrics.disabled.Inc()
	}
	log := d.log.With(slog.String("delivery_id", tgt.ID), slog.String("endpoint_id", tgt.EndpointID),
		slog.Int("attempt", out.Attempt), slog.String("status", out.Status))
	if res.err != nil {
		log.InfoContext(ctx, "webhook attempt failed", slog.String("error", *out.Error))
	} else {
		log.InfoContext(ctx, "webhook attempt answered", slog.Int("status_code", res.status), slog.Duration("latency", res.latency))
	}
	if gone {
		log.WarnContext(ctx, "webhook endpoint disabled: its receiver answered 410 Gone")
	}
	if out.Status == store.DeliveryPending {
		task, opts := jobs.NewDeliveryTask(tgt.ID, out.Attempt, out.NextAttemptAt)
		jobs.Enqueue(rctx, d.queue, log, task, opts...)
	}
	return nil
}

// attemptOutcome is the outcome label of a recorded attempt.
func attemptOutcome(o store.AttemptOutcome, gone bool) string {
	switch {
	case gone:
		return attemptGone
	case o.Status == store.DeliverySucceeded:
		return attemptDelivered
	case o.Status == store.DeliveryFailed:
		return attemptExhausted
	}
	return attemptRetry
}

// fail ends a pending delivery without an attempt; why labels the metric.
func (d *deliverer) fail(ctx context.Context, deliveryID, reason, why string) error {
	err := store.FailWebhookDelivery(ctx, d.st.DB, deliveryID, reason)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fail delivery %s: %w", deliveryID, err)
	}
	d.metrics.abandoned.WithLabelValues(why).Inc()
	return nil
}

// acquire takes a slot for an attempt to the endpoint, or answers how long
// to put the attempt off: about as long as the endpoint's attempts take
// (at least a second), with jitter, so that its backlog returns spread out
// and a hung endpoint's backlog costs one look every 15 to 30 seconds.
func (d *deliverer) acquire(endpointID string) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if len(d.endpoints) > 10_000 {
		for ep, l := range d.endpoints {
			if l.inFlight == 0 && now.Sub(l.lastSeen) > time.Hour {
				delete(d.endpoints, ep)
			}
		}
	}
	l := d.endpoints[endpointID]
	if l == nil {
		l = &endpointLoad{}
		d.endpoints[endpointID] = l
	}
	l.lastSeen = now
	fast := l.last > 0 && l.last < SlowAttempt
	if l.inFlight >= d.opts.PerEndpoint && !fast {
		wait := min(max(l.last, time.Second), d.opts.Timeout)
		return wait + rand.N(wait), false
	}
	l.inFlight++
	return 0, true
}

// release gives the slot back; took is how long the attempt took (0 when
// none was made).
func (d *deliverer) release(endpointID string, took time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.endpoints[endpointID]
	l.inFlight--
	if took > 0 {
		l.last = took
	}
}

// sent is what one request came to: an answer or an error.
type sent struct {
	status  int
	header  http.Header
	body    string
	latency time.Duration
	err     error
}

// send POSTs the payload, signed for this attempt, and reads at most
// maxResponseBody bytes of the answer (and drains a little more, so the
// connection can be reused).
func (d *deliverer) send(ctx context.Context, tgt store.DeliveryTarget, secret string) (res sent) {
	ctx, span := d.startSend(ctx, tgt)
	defer func() { d.endSend(span, res) }()
	h, err := webhook.Headers(secret, tgt.ID, time.Now(), tgt.Payload)
	if err != nil {
		return sent{err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tgt.URL, bytes.NewReader(tgt.Payload))
	if err != nil {
		return sent{err: err}
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		return sent{latency: time.Since(start), err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return sent{status: resp.StatusCode, header: resp.Header, body: printable(b), latency: time.Since(start)}
}

// startSend starts the client span of one attempt's request, a child of
// the delivery task's span. A span by hand rather than otelhttp's
// transport: that one records the full URL, and a receiver's URL may carry
// a token (path or query) that must stay out of traces as out of logs; so
// the span names the host only. No traceparent goes to the receiver
// either: our trace ids are no business of a customer's server.
func (d *deliverer) startSend(ctx context.Context, tgt store.DeliveryTarget) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", http.MethodPost),
		attribute.String("mocd.webhook.delivery_id", tgt.ID),
		attribute.Int("mocd.webhook.attempt", tgt.Attempts+1),
	}
	if u, err := url.Parse(tgt.URL); err == nil {
		attrs = append(attrs, attribute.String("server.address", u.Hostname()))
		if p := u.Port(); p != "" {
			attrs = append(attrs, attribute.String("server.port", p))
		}
	}
	return telemetry.Tracer().Start(ctx, "webhook POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endSend ends an attempt's span with its outcome: the status code, or the
// customer's description of the failure (never the error's own text,
// which names the URL).
func (d *deliverer) endSend(span trace.Span, r sent) {
	switch {
	case r.err != nil:
		span.SetAttributes(attribute.String("error.type", "request_failed"))
		span.SetStatus(codes.Error, d.describe(r.err))
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", r.status))
		if r.status >= 400 {
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(r.status)))
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}

// outcome decides what an attempt means for its delivery: 2xx succeeds,
// 410 fails it and disables the endpoint (gone), anything else is retried
// on the schedule, no sooner than the receiver's Retry-After.
func (d *deliverer) outcome(attempt int, r sent) (o store.AttemptOutcome, gone bool) {
	o = store.AttemptOutcome{Attempt: attempt, Latency: r.latency, Status: store.DeliveryPending}
	var retryAfter time.Duration
	if r.err != nil {
		msg := d.describe(r.err)
		o.Error = &msg
	} else {
		o.StatusCode = &r.status
		if r.body != "" {
			o.ResponseBody = &r.body
		}
		retryAfter = webhook.ParseRetryAfter(r.header, time.Now())
	}
	switch {
	case r.err == nil && r.status >= 200 && r.status < 300:
		o.Status = store.DeliverySucceeded
	case r.err == nil && r.status == http.StatusGone:
		reason := ReasonGone + "; the endpoint was disabled"
		o.Status, o.FailureReason = store.DeliveryFailed, &reason
		return o, true
	default:
		delay, ok := d.nextDelay(attempt, retryAfter)
		if !ok {
			reason := fmt.Sprintf("gave up after %d attempts", attempt)
			o.Status, o.FailureReason = store.DeliveryFailed, &reason
			break
		}
		o.NextAttemptAt = time.Now().Add(delay)
	}
	return o, false
}

// describe turns a failed request into a line for the customer: what went
// wrong, without our internals.
func (d *deliverer) describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, webhook.ErrForbiddenAddress):
		return "refused: the URL resolves to a private, loopback or link-local address"
	case errors.Is(err, context.Canceled):
		return "the worker stopped during the attempt"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s", d.opts.Timeout)
	}
	// Without the "Post <url>:" prefix: the customer knows the URL, and a
	// URL may carry a token that must not reach the logs.
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// printable makes a response body storable as text: valid UTF-8 without
// NUL bytes (Postgres text holds neither), at most maxResponseBody bytes.
func printable(b []byte) string {
	s := strings.ReplaceAll(strings.ToValidUTF8(string(b), "\uFFFD"), "\x00", "")
	if len(s) <= maxResponseBody {
		return s
	}
	cut := maxResponseBody
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// deliveryRelayBatch bounds one read of overdue deliveries.
const deliveryRelayBatch = 500

// relay queues the next attempt of every pending delivery that is overdue
// by more than Grace and has no live task: its task was lost (Redis
// flushed, the enqueue after a commit failed), its worker died during an
// attempt, or Asynq archived it. An attempt whose worker died is recorded
// as such.
func (d *deliverer) relay(ctx context.Context) error {
	due, err := store.DueWebhookDeliveries(ctx, d.st.DB, d.opts.Grace, deliveryRelayBatch)
	if err != nil {
		return fmt.Errorf("relay webhook deliveries: %w", err)
	}
	var errs []error
	for _, dl := range due {
		if !dl.Recorded {
			msg := "the worker stopped during this attempt; its outcome is unknown"
			if err := store.InsertWebhookAttempt(ctx, d.st.DB, dl.ID, dl.Attempts, nil, 0, nil, &msg); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := d.ensureQueued(ctx, dl); err != nil {
			errs = append(errs, fmt.Errorf("relay delivery %s: %w", dl.ID, err))
		}
	}
	return errors.Join(errs...)
}

// ensureQueued enqueues the delivery's next attempt. A task already in
// Redis is fine unless Asynq archived it (its handler failed, or its
// worker died): then it is replaced.
func (d *deliverer) ensureQueued(ctx context.Context, dl store.DueWebhookDelivery) error {
	// Its task stays in the trace of what queued the delivery.
	ctx = telemetry.WithTraceparent(ctx, dl.Traceparent)
	task, opts := jobs.NewDeliveryTask(dl.ID, dl.Attempts, time.Now())
	added, err := jobs.Enqueue(ctx, d.queue, nil, task, opts...)
	if err != nil {
		return err
	}
	reason := requeueMissing
	if !dl.Recorded {
		reason = requeueRescue // its worker died during the attempt
	}
	if !added {
		if added, _, err = jobs.Requeue(ctx, d.queue, d.insp, task, opts...); !added || err != nil {
			return err // queued, scheduled or running
		}
		reason = requeueArchived
	}
	d.metrics.requeue(requeueDelivery, reason)
	d.log.InfoContext(ctx, "relay: queued a webhook attempt whose task was missing",
		slog.String("delivery_id", dl.ID), slog.Int("attempt", dl.Attempts+1))
	return store.MarkWebhookEnqueued(ctx, d.st.DB, dl.ID)
}
