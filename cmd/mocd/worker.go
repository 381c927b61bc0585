package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/myopenclaw/mocd/config"
)

func runWorker(ctx context.Context, args []string, getenv env, stderr io.Writer) error {
	cfg, err := loadConfig(config.ModeProd, getenv)
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

// runWorkerWith runs the Asynq server until ctx ends.
func runWorkerWith(ctx context.Context, d *deps) error {
	ropts, _ := asynq.ParseRedisURI(d.cfg.RedisURL)
	srv := asynq.NewServer(ropts, asynq.Config{Logger: nil})
	mux := asynq.NewServeMux()
	if err := srv.Start(mux); err != nil {
		return err
	}
	<-ctx.Done()
	srv.Shutdown()
	return nil
}
