package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/fly"
	"github.com/myopenclaw/mocd/webhook"
	"github.com/myopenclaw/mocd/worker"
)

func runWorker(ctx context.Context, args []string, getenv env, stderr io.Writer) error {
	cfg, err := loadConfig(config.ModeProd, getenv, config.Config.RequireSecretKey, config.Config.RequireFly)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	log.Info("mocd worker starting", slog.Any("config", cfg))
	return runWorkerWith(ctx, d)
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
	w := worker.New(worker.Options{
		Store: d.store,
		Redis: ropt,
		Fly: fly.New(fly.Options{
			BaseURL: d.cfg.FlyAPIBaseURL,
			Token:   d.cfg.FlyAPIToken,
			Logger:  d.log.With("component", "fly"),
		}),
		FlyOrg:    d.cfg.FlyOrg,
		Image:     d.cfg.InstanceImage,
		Logger:    d.log.With("component", "worker"),
		Retention: d.cfg.Retention,
		Webhooks: worker.WebhookOptions{
			SecretBox:    box,
			AllowPrivate: d.cfg.WebhookAllowPrivate,
		},
	})
	return w.Run(ctx)
}
