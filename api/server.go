// Package api is mocd's HTTP face: the Gin router, the middleware chain every
// route shares (request id, transport check, authentication, plan, rate
// limit, scope, idempotency) and the handlers of API.md. Handlers return
// errors; errors.go maps them to answers in one place.
package api

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"

	"github.com/myopenclaw/mocd/apikey"
	"github.com/myopenclaw/mocd/jobs"
	"github.com/myopenclaw/mocd/logctx"
	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/telemetry"
	"github.com/myopenclaw/mocd/versions"
	"github.com/myopenclaw/mocd/webhook"
)

// Options are the api's dependencies and settings.
type Options struct {
	Store *store.Store
	Redis redis.UniversalClient
	// Limiter enforces the plan's rate limits; required.
	Limiter *ratelimit.Limiter
	Pepper  []byte
	Logger  *slog.Logger
	// Registry receives the api's metrics; nil makes a private one.
	Registry *prometheus.Registry

	// TLS says the server terminates TLS itself.
	TLS bool
	// AllowPlainHTTP admits plain-HTTP API calls: mocd dev on loopback, or
	// a docker-compose stack on a developer's machine.
	AllowPlainHTTP bool
	// TrustedProxies may say X-Forwarded-Proto: https and X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// FailedAuthsPerMinute is how many failed authentications one client
	// address may make per minute (default ratelimit.FailedAuthsPerMinute).
	FailedAuthsPerMinute int
	// IdempotencyLockTimeout: see DefaultIdempotencyLockTimeout.
	IdempotencyLockTimeout time.Duration
	// Enqueuer queues the task of each accepted operation and webhook
	// delivery (an *asynq.Client); nil leaves them to the worker's relay.
	Enqueuer jobs.Enqueuer
	// BaseDomain is the domain of instance URLs; default wire.DefaultBaseDomain.
	BaseDomain string
	// SecretBox seals webhook signing secrets (MOC_SECRET_KEY); required
	// to create webhook endpoints.
	SecretBox *webhook.SecretBox
	// WebhookAllowPrivate accepts http and private, loopback and
	// link-local webhook URLs: development and tests only.
	WebhookAllowPrivate bool
	// Notifier wakes waiters (GET /operations/:id/wait) and streams (GET
	// /events/stream) when a commit finishes an operation or records an
	// event, and drops kept key rows when a key or a plan changes; it
	// listens on NotifyChannels and its Run belongs to the caller. Without
	// one, waiters and streams look again every second instead, and a kept
	// key row lives out its KeyCacheMaxAge.
	Notifier *notify.Hub
	// StreamHeartbeat is the interval of the event stream's heartbeat
	// comment; default 15 s (API.md).
	StreamHeartbeat time.Duration
	// KeyCacheMaxAge is how long a verified key's row may be reused
	// (keycache.go); default DefaultKeyCacheMaxAge, negative turns the
	// cache off. Now is the cache's clock (default time.Now): tests move it.
	KeyCacheMaxAge time.Duration
	Now            func() time.Time

	// Versions is the operator's catalog of OpenClaw versions
	// (MOC_VERSIONS_FILE). Nil lists none: instances then get no version
	// and run the worker's MOC_INSTANCE_IMAGE.
	Versions *versions.Catalog
}

// NotifyChannels are the channels the api's Notifier listens on.
var NotifyChannels = []string{store.ChannelOperationFinished, store.ChannelEvent, store.ChannelKeyChanged}

// Server is the HTTP API.
type Server struct {
	opts   Options
	log    *slog.Logger
	engine *gin.Engine
	uses   *keyUses
	keys   *keyCache
	// stopWatch ends the key cache's watch of ChannelKeyChanged.
	stopWatch func()
	authFails *authFailures
	metrics   *metrics
	counters  *engineMetrics
	cursorKey []byte
	// cursorCipher encrypts cursors (see sealCursorBytes).
	cursorCipher cipher.Block
	routeList    []Route
	// closing is closed when Run ends: waiters answer at once and streams
	// end, so that a graceful shutdown is not held up by them.
	closing chan struct{}
	// secretDigestKey keys the digests of instance secrets (secrets.go).
	secretDigestKey []byte
}

// handlerFunc is a handler that returns its error instead of writing it.
type handlerFunc func(c *gin.Context) error

// New builds the router.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.KeyCacheMaxAge == 0 {
		opts.KeyCacheMaxAge = DefaultKeyCacheMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	gin.SetMode(gin.ReleaseMode)
	s := &Server{
		opts:            opts,
		log:             logctx.New(opts.Logger),
		uses:            newKeyUses(),
		authFails:       newAuthFailures(),
		metrics:         newMetrics(opts.Registry),
		counters:        newEngineMetrics(opts.Registry),
		cursorKey:       derive(opts.Pepper, "cursor"),
		closing:         make(chan struct{}),
		secretDigestKey: derive(opts.Pepper, "secret-digest"),
		keys:            newKeyCache(opts.KeyCacheMaxAge, opts.Now),
		stopWatch:       func() {},
	}
	if opts.Notifier != nil {
		s.stopWatch = opts.Notifier.Watch(store.ChannelKeyChanged, s.keys.invalidate)
	}
	if s.opts.StreamHeartbeat <= 0 {
		s.opts.StreamHeartbeat = defaultHeartbeat
	}
	// AES-256 accepts any 32-byte key, which derive always returns.
	s.cursorCipher, _ = aes.NewCipher(derive(opts.Pepper, "cursor-encryption"))
	s.engine = s.routes()
	return s
}

// Handler is the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.engine }

// Run does the api's background work until ctx ends: it flushes the
// last-used times of keys and their request counts every flushInterval,
// and once more at the end.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			close(s.closing)
			s.stopWatch()
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.flushKeyUses(fctx)
			cancel()
			return
		case <-t.C:
			s.flushKeyUses(ctx)
		}
	}
}

// flushInterval bounds what a crash of an api process loses: the last-used
// times and request counts of at most this long.
const flushInterval = 5 * time.Second

// flushKeyUses writes what keyUses collected; what fails to be written is
// kept for the next flush.
func (s *Server) flushKeyUses(ctx context.Context) {
	used, counts := s.uses.take()
	if err := store.TouchKeys(ctx, s.opts.Store.DB, used); err != nil {
		s.log.WarnContext(ctx, "record key use", slog.Any("error", err))
		s.uses.putBack(used)
	}
	rows := make([]store.RequestCount, 0, len(counts))
	for d, n := range counts {
		rows = append(rows, store.RequestCount{AccountID: d.accountID, KeyID: d.keyID, Day: d.day, Requests: n})
	}
	if err := store.AddRequestCounts(ctx, s.opts.Store.DB, rows); err != nil {
		s.log.WarnContext(ctx, "record request counts", slog.Any("error", err))
		s.uses.putBackCounts(counts)
	}
}

func (s *Server) routes() *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	// Gin reads X-Forwarded-For only from these, for c.ClientIP().
	var proxies []string
	for _, p := range s.opts.TrustedProxies {
		proxies = append(proxies, p.String())
	}
	_ = e.SetTrustedProxies(proxies)
	// otelgin first: every other middleware and the handler run inside the
	// request's server span (named after the route template). When this
	// process records no spans, a span per request would cost about 7% of
	// a poll's CPU for nothing (BENCHMARKS.md): the caller's trace context
	// is then only carried along, so that the operations it accepts still
	// name it.
	traced := otelgin.Middleware("mocd-api")
	if !telemetry.Recording() {
		traced = func(c *gin.Context) {
			c.Request = c.Request.WithContext(telemetry.PropagateOnly(c.Request.Context(), c.Request.Header))
			c.Next()
		}
	}
	e.Use(traced, s.requestIDMiddleware, s.metrics.middleware, s.accessLogMiddleware, s.recoverMiddleware)
	e.NoRoute(s.handle(func(c *gin.Context) error { return errNotFound }))
	e.NoMethod(s.handle(func(c *gin.Context) error {
		// The method is named only when it is a known one: the caller's own
		// 200 KB method is not worth echoing.
		return newError(http.StatusMethodNotAllowed, "method_not_allowed", "method %s is not allowed here", methodLabel(c.Request.Method))
	}))

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", s.metrics.handler())
	s.docsRoutes(e) // GET /api/v1/openapi.json and /docs: public, outside the group below

	v1 := e.Group("/api/v1", s.transportMiddleware, s.authMiddleware, s.planMiddleware, s.rateLimitMiddleware, s.bodyMiddleware)
	r := router{s: s, g: v1}
	r.handle(http.MethodGet, "/keys", apikey.KeysRead, s.listKeys)
	r.handle(http.MethodPost, "/keys", apikey.KeysWrite, s.createKey)
	r.handle(http.MethodPost, "/keys/:id/rotate", apikey.KeysWrite, s.rotateKey)
	r.handle(http.MethodDelete, "/keys/:id", apikey.KeysWrite, s.revokeKey)
	r.handle(http.MethodGet, "/instances", apikey.InstanceRead, s.listInstances)
	r.handle(http.MethodPost, "/instances", apikey.InstanceWrite, s.createInstance)
	r.handle(http.MethodGet, "/instances/:id", apikey.InstanceRead, s.getInstance)
	r.handle(http.MethodPost, "/instances/:id/start", apikey.InstanceWrite, s.lifecycle(store.OpStart, store.StatusStarting))
	r.handle(http.MethodPost, "/instances/:id/stop", apikey.InstanceWrite, s.lifecycle(store.OpStop, store.StatusStopping))
	r.handle(http.MethodPost, "/instances/:id/restart", apikey.InstanceWrite, s.lifecycle(store.OpRestart, store.StatusRestarting))
	r.handle(http.MethodDelete, "/instances/:id", apikey.InstanceDelete, s.lifecycle(store.OpDelete, store.StatusDeleting))
	r.handle(http.MethodGet, "/instances/:id/events", apikey.LogsRead, s.listInstanceEvents)
	r.handle(http.MethodPost, "/instances/:id/upgrade", apikey.InstanceWrite, s.upgradeInstance)
	r.handle(http.MethodGet, "/instances/:id/secrets", apikey.InstanceRead, s.listSecrets)
	r.handle(http.MethodPut, "/instances/:id/secrets/:name", apikey.InstanceWrite, s.putSecret)
	r.handle(http.MethodDelete, "/instances/:id/secrets/:name", apikey.InstanceWrite, s.deleteSecret)
	r.handle(http.MethodGet, "/versions", apikey.InstanceRead, s.listVersions)
	r.handle(http.MethodGet, "/operations", apikey.OperationsRead, s.listOperations)
	r.handle(http.MethodGet, "/operations/:id", apikey.OperationsRead, s.getOperation)
	r.handle(http.MethodGet, "/operations/:id/wait", apikey.OperationsRead, s.waitOperation)
	r.handle(http.MethodPost, "/operations/:id/cancel", apikey.InstanceWrite, s.cancelOperation)
	r.handle(http.MethodGet, "/events", apikey.OperationsRead, s.listEvents)
	r.handle(http.MethodGet, "/events/stream", apikey.OperationsRead, s.streamEvents)
	r.handle(http.MethodGet, "/logs", apikey.LogsRead, s.listLogs)
	r.handle(http.MethodGet, "/usage", apikey.UsageRead, s.getUsage)
	r.handle(http.MethodGet, "/account", apikey.AccountRead, s.getAccount)
	r.handle(http.MethodGet, "/metrics", apikey.InstanceRead, s.metricsFeed)
	r.handle(http.MethodGet, "/webhooks", apikey.WebhooksRead, s.listWebhooks)
	r.handle(http.MethodPost, "/webhooks", apikey.WebhooksWrite, s.createWebhook)
	r.handle(http.MethodPatch, "/webhooks/:id", apikey.WebhooksWrite, s.updateWebhook)
	r.handle(http.MethodDelete, "/webhooks/:id", apikey.WebhooksWrite, s.deleteWebhook)
	r.handle(http.MethodPost, "/webhooks/:id/test", apikey.WebhooksWrite, s.testWebhook)
	r.handle(http.MethodGet, "/webhooks/:id/deliveries", apikey.WebhooksRead, s.listDeliveries)
	return e
}

// router registers routes with the per-route part of the chain.
type router struct {
	s *Server
	g *gin.RouterGroup
}

// Route is one authenticated route and the scope it needs.
type Route struct {
	Method, Path, Scope string
}

// Routes lists every authenticated route with its scope, so that tests can
// check every route × every scope and token kind, including routes added
// later.
func (s *Server) Routes() []Route { return s.routeList }

// handle registers method+path behind the scope check and, for methods
// that change state, the Idempotency-Key handling.
func (r router) handle(method, path, scope string, h handlerFunc) {
	chain := []gin.HandlerFunc{r.s.scopeMiddleware(scope)}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		chain = append(chain, r.s.idempotencyMiddleware)
	}
	r.g.Handle(method, path, append(chain, r.s.handle(h))...)
	r.s.routeList = append(r.s.routeList, Route{Method: method, Path: r.g.BasePath() + path, Scope: scope})
}

// handle adapts a handlerFunc to Gin, sending its error through writeError.
func (s *Server) handle(h handlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			writeError(c, s.log, err)
		}
	}
}

// derive makes an independent key for one purpose from the pepper.
func derive(pepper []byte, purpose string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte("mocd/" + purpose))
	return m.Sum(nil)
}
