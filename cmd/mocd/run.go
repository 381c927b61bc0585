package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/myopenclaw/mocd/config"
	"github.com/myopenclaw/mocd/logctx"
	"github.com/myopenclaw/mocd/telemetry"
)

const usage = `usage: mocd <command> [flags]

commands:
  dev       migrate, then run api + worker + a Fly Machines emulator (plain HTTP on loopback)
  api       run the HTTP API
  worker    run the background worker (lifecycle jobs, webhooks, relay, reconciler)
  migrate   apply database migrations and exit
  flysim    run the Fly Machines API emulator alone
  admin     operator commands: create-account, set-plan, create-key
            (mocd dev admin …: the same against mocd dev, with its dev pepper)

Configuration comes from environment variables; see README.md.`

// env is how subcommands read the environment (os.Getenv, or a map in tests).
type env func(string) string

// run dispatches a subcommand. It owns nothing global: each subcommand
// builds its dependencies and closes them before returning.
func run(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		if len(rest) > 0 && rest[0] == "admin" {
			return runAdmin(ctx, config.ModeDev, rest[1:], getenv, stdout)
		}
		return runDev(ctx, rest, getenv, stdout, stderr)
	case "api":
		return runAPI(ctx, rest, getenv, stderr)
	case "worker":
		return runWorker(ctx, rest, getenv, stderr)
	case "migrate":
		return runMigrate(ctx, getenv, stderr)
	case "flysim":
		return runFlysim(ctx, getenv, stderr)
	case "admin":
		return runAdmin(ctx, config.ModeProd, rest, getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// loadConfig reads the configuration and checks the settings the command
// needs (config's Require… methods), turning every problem into one line.
func loadConfig(mode config.Mode, getenv env, needs ...func(config.Config) error) (config.Config, error) {
	cfg, err := config.Load(mode, getenv)
	if err == nil {
		errs := make([]error, 0, len(needs))
		for _, need := range needs {
			errs = append(errs, need(cfg))
		}
		err = errors.Join(errs...)
	}
	if err != nil {
		return cfg, fmt.Errorf("configuration: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return cfg, nil
}

// newLogger logs JSON in production and text in dev, at the configured
// level; every record logged with a request's context carries its id
// (logctx).
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Mode == config.ModeDev {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(logctx.NewHandler(h))
}

// startTracing sets up OpenTelemetry for service (telemetry.SetupTracing);
// stop flushes what is left, waiting 5 s at most.
func startTracing(ctx context.Context, getenv func(string) string, service string) (stop func(), err error) {
	shutdown, err := telemetry.SetupTracing(ctx, getenv, service)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry: %w", err)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}, nil
}
