package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/flysim"
	"github.com/myopenclaw/mocd/store"
)

// runDev is the whole system on a laptop: it creates and migrates the
// database, runs a Fly Machines emulator in-process (unless FLY_API_BASE_URL
// or FLY_API_TOKEN point elsewhere), the worker and the api on plain HTTP.
func runDev(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(config.ModeDev, getenv)
	if err != nil {
		return err
	}
	if !cfg.UseEmbeddedFlysim() {
		// Pointed at another Machines API, dev needs what the worker needs.
		if err := cfg.RequireFly(); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	log := newLogger(cfg, stderr)
	stopTracing, err := startTracing(ctx, getenv, "mocd-dev")
	if err != nil {
		return err
	}
	defer stopTracing()
	if err := store.CreateDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := store.Migrate(ctx, d.store.DB.DB); err != nil {
		return err
	}
	if err := d.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to redis at %s: %w (start one with scripts/services.sh)", cfg.RedisURL, err)
	}

	g, gctx := errgroup.WithContext(ctx)
	if cfg.UseEmbeddedFlysim() {
		sim := flysim.New(flysimOptions(cfg, log.With("component", "flysim")))
		defer sim.Close()
		ready := make(chan string, 1)
		g.Go(func() error { return serveHTTP(gctx, log, cfg.FlysimListen, sim, "", "", ready) })
		select {
		case addr := <-ready:
			d.cfg.FlyAPIBaseURL = "http://" + addr
			d.cfg.FlyAPIToken = "flysim"
		case <-gctx.Done():
			return g.Wait()
		}
	}
	srv, client, err := newAPI(d)
	if err != nil {
		return err
	}
	defer client.Close()
	g.Go(func() error { srv.Run(gctx); return nil })
	g.Go(func() error { return d.hub.Run(gctx) })
	g.Go(func() error { return runWorkerWith(gctx, d) })
	ready := make(chan string, 1)
	g.Go(func() error { return serveHTTP(gctx, log, cfg.Listen, srv.Handler(), "", "", ready) })
	select {
	case addr := <-ready:
		fmt.Fprintf(stdout, `
mocd dev is running.
  API          http://%[1]s/api/v1   (health: http://%[1]s/readyz)
  Fly API      %[2]s
Create an account and its first key (prints a token once):
  go run ./cmd/mocd dev admin create-account --email you@example.com --plan pro --json
Then call the API:
  curl -s http://%[1]s/api/v1/keys -H "Authorization: Bearer $TOKEN"
`, addr, d.cfg.FlyAPIBaseURL)
	case <-gctx.Done():
	}
	err = g.Wait()
	log.Info("mocd dev stopped", slog.Any("error", err))
	return err
}
