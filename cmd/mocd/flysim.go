package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/flysim"
)

func runFlysim(ctx context.Context, getenv env, stderr io.Writer) error {
	cfg, err := loadConfig(config.ModeDev, getenv)
	if err != nil {
		return err
	}
	log := newLogger(config.Config{Mode: config.ModeProd, LogLevel: cfg.LogLevel}, stderr)
	sim := flysim.New(flysim.Options{Delay: cfg.FlysimDelay, Logger: log})
	defer sim.Close()
	log.Info("flysim starting", slog.Duration("delay", cfg.FlysimDelay))
	return serveHTTP(ctx, log, cfg.FlysimListen, sim, "", "", nil)
}
