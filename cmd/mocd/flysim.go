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
	sim := flysim.New(flysimOptions(cfg, log))
	defer sim.Close()
	log.Info("flysim starting", slog.Duration("delay", cfg.FlysimDelay), slog.Duration("propagation", cfg.FlysimPropagation),
		slog.Float64("chaos", cfg.FlysimChaos), slog.Uint64("seed", cfg.FlysimSeed))
	return serveHTTP(ctx, log, cfg.FlysimListen, sim, "", "", nil)
}

// flysimOptions are the emulator's settings from the FLYSIM_ variables.
func flysimOptions(cfg config.Config, log *slog.Logger) flysim.Options {
	return flysim.Options{
		Delay:       cfg.FlysimDelay,
		Propagation: cfg.FlysimPropagation,
		Chaos:       cfg.FlysimChaos,
		Seed:        cfg.FlysimSeed,
		Logger:      log,

		UnhealthyImages: cfg.FlysimUnhealthyImages,
	}
}
