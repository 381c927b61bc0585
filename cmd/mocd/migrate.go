package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/store"
)

func runMigrate(ctx context.Context, getenv env, stderr io.Writer) error {
	// Migrations need only the database: no pepper, no Redis.
	cfg, err := loadConfig(config.ModeProd, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := store.Migrate(ctx, st.DB.DB)
	if err != nil {
		return err
	}
	log.Info("migrations applied", slog.Int("applied", n))
	return nil
}
