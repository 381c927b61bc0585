// Command mocd is the MyOpenClaw Developer API engine: one binary whose
// subcommands run the api, the worker, migrations, the Fly Machines
// emulator, the whole system for a laptop (dev), and operator commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mocd:", err)
		os.Exit(1)
	}
}
