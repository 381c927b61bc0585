package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/notify"
	"github.com/myopenclaw/mocd/webhook"
	"github.com/myopenclaw/mocd/worker"
)

func runWorker(ctx context.Context, args []string, getenv env, stderr io.Writer) error {
	cfg, err := loadConfig(config.ModeProd, getenv, config.Config.RequireSecretKey, config.Config.RequireFly)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	stopTracing, err := startTracing(ctx, getenv, "mocd-worker")
	if err != nil {
		return err
	}
	defer stopTracing()
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	log.Info("mocd worker starting", slog.Any("config", cfg))
	// The worker serves nothing else: /metrics alone, on its own address,
	// and pprof if asked for.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runWorkerWith(gctx, d) })
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
		g.Go(func() error { return serveHTTP(gctx, log, cfg.MetricsListen, mux, "", "", nil) })
	}
	if cfg.DebugListen != "" {
		g.Go(func() error { return serveHTTP(gctx, log, cfg.DebugListen, debugHandler(), "", "", nil) })
	}
	return g.Wait()
}

// asynqRedis is the Asynq connection for REDIS_URL.
func asynqRedis(redisURL string) (asynq.RedisConnOpt, error) {
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return opt, nil
}

// runWorkerWith runs the worker against the Machines API of d.cfg until
// ctx ends.
func runWorkerWith(ctx context.Context, d *deps) error {
	ropt, err := asynqRedis(d.cfg.RedisURL)
	if err != nil {
		return err
	}
	box, err := webhook.SecretBoxFromStrings(d.cfg.SecretKey, d.cfg.SecretKeyPrevious)
	if err != nil {
		return fmt.Errorf("MOC_SECRET_KEY: %w", err)
	}
	// Queue depth and the age of the oldest pending task, per queue, from
	// Asynq's own collector (one inspector read per scrape).
	insp := asynq.NewInspector(ropt)
	defer insp.Close()
	d.reg.MustRegister(asynqmetrics.NewQueueMetricsCollector(insp))
	defer d.reg.Unregister(asynqmetrics.NewQueueMetricsCollector(insp))
	// One listening connection: the commit of each accept wakes the worker
	// (worker/wake.go); Asynq remains the durable path without it.
	hub := notify.New(d.cfg.DatabaseURL, []string{worker.ChannelOperationCreated}, d.log.With("component", "listen"))
	w := worker.New(worker.Options{
		Store:    d.store,
		Redis:    ropt,
		Registry: d.reg,
		Waker:    hub,
		Fly: fly.New(fly.Options{
			BaseURL:    d.cfg.FlyAPIBaseURL,
			Token:      d.cfg.FlyAPIToken,
			Logger:     d.log.With("component", "fly"),
			Registerer: d.reg,
		}),
		FlyOrg:    d.cfg.FlyOrg,
		Image:     d.cfg.InstanceImage,
		Logger:    d.log.With("component", "worker"),
		Retention: d.cfg.Retention,
		LeaseTTL:  d.cfg.FlyLeaseTTL,
		SecretBox: box,

		UpgradeTimeout: d.cfg.UpgradeTimeout,
		Webhooks: worker.WebhookOptions{
			SecretBox:    box,
			AllowPrivate: d.cfg.WebhookAllowPrivate,
		},
	})
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		if err := hub.Run(ctx); err != nil {
			d.log.Warn("wake-ups off: cannot listen for new operations; Asynq polling carries them", slog.Any("error", err))
		}
	}()
	defer func() { <-hubDone }()
	return w.Run(ctx)
}
