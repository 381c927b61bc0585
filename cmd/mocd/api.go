package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/myopenclaw/mocd/api"
	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/ratelimit"
	"github.com/myopenclaw/mocd/store"
	"github.com/myopenclaw/mocd/versions"
	"github.com/myopenclaw/mocd/webhook"
)

// deps are the connections every long-running process shares.
type deps struct {
	cfg   config.Config
	log   *slog.Logger
	store *store.Store
	redis *redis.Client
	// hub is the process's one Postgres listening connection, fanning
	// wake-ups out to waiters and streams; a process that needs it runs
	// hub.Run.
	hub *notify.Hub
	// reg holds every metric of the process: the api serves it at
	// /metrics, the worker on MOC_METRICS_LISTEN, and mocd dev's api shows
	// the api's, the worker's and the Fly client's together.
	reg *prometheus.Registry
}

func openDeps(ctx context.Context, cfg config.Config, log *slog.Logger) (*deps, error) {
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.DBMaxConns > 0 {
		st.SetMaxConns(cfg.DBMaxConns)
	}
	ropts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	// Deadlines of request contexts bound Redis calls too: a hung Redis
	// must not hang the API (the rate limiter fails closed instead).
	ropts.ContextTimeoutEnabled = true
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hub := notify.New(cfg.DatabaseURL, api.NotifyChannels, log)
	return &deps{cfg: cfg, log: log, store: st, redis: redis.NewClient(ropts), hub: hub, reg: reg}, nil
}

func (d *deps) Close() {
	d.redis.Close()
	d.store.Close()
}

// newAPI builds the api; close the returned client when it stops.
func newAPI(d *deps) (*api.Server, io.Closer, error) {
	ropt, err := asynqRedis(d.cfg.RedisURL)
	if err != nil {
		return nil, nil, err
	}
	box, err := webhook.SecretBoxFromStrings(d.cfg.SecretKey, d.cfg.SecretKeyPrevious)
	if err != nil {
		return nil, nil, fmt.Errorf("MOC_SECRET_KEY: %w", err)
	}
	catalog, err := versions.Load(d.cfg.VersionsFile, d.cfg.InstanceImage)
	if err != nil {
		return nil, nil, fmt.Errorf("MOC_VERSIONS_FILE: %w", err)
	}
	client := asynq.NewClient(ropt)
	return api.New(api.Options{
		Store:          d.store,
		Redis:          d.redis,
		Limiter:        ratelimit.New(d.redis, ratelimit.Options{Timeout: d.cfg.RateLimitTimeout}),
		Pepper:         []byte(d.cfg.Pepper),
		Logger:         d.log,
		Registry:       d.reg,
		TLS:            d.cfg.TLSCert != "",
		AllowPlainHTTP: d.cfg.Mode == config.ModeDev || d.cfg.InsecureHTTP,
		TrustedProxies: d.cfg.TrustedProxies,
		Enqueuer:       client,

		SecretBox:           box,
		WebhookAllowPrivate: d.cfg.WebhookAllowPrivate,
		Notifier:            d.hub,
		Versions:            catalog,
	}), client, nil
}

func runAPI(ctx context.Context, args []string, getenv env, stderr io.Writer) error {
	cfg, err := loadConfig(config.ModeProd, getenv, config.Config.RequirePepper, config.Config.RequireSecretKey)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	stopTracing, err := startTracing(ctx, getenv, "mocd-api")
	if err != nil {
		return err
	}
	defer stopTracing()
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	srv, client, err := newAPI(d)
	if err != nil {
		return err
	}
	defer client.Close()
	log.Info("mocd api starting", slog.Any("config", cfg))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { srv.Run(gctx); return nil })
	g.Go(func() error { return d.hub.Run(gctx) })
	g.Go(func() error { return serveHTTP(gctx, log, cfg.Listen, srv.Handler(), cfg.TLSCert, cfg.TLSKey, nil) })
	if cfg.DebugListen != "" {
		g.Go(func() error { return serveHTTP(gctx, log, cfg.DebugListen, debugHandler(), "", "", nil) })
	}
	return g.Wait()
}

// debugHandler serves net/http/pprof, for MOC_DEBUG_LISTEN (loopback only,
// off by default): CPU and heap profiles of the running api, as make bench
// takes them.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveHTTP serves h on addr until ctx ends, then drains in-flight requests.
// ready, when set, receives the bound address once the socket listens.
func serveHTTP(ctx context.Context, log *slog.Logger, addr string, h http.Handler, certFile, keyFile string, ready chan<- string) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      90 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("listening", slog.String("addr", ln.Addr().String()), slog.Bool("tls", certFile != ""))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
