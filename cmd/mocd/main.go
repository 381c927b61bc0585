// Command mocd is the MyOpenClaw Developer API engine: one binary whose
// subcommands run the api, the worker, migrations, the Fly Machines
// emulator, the whole system for a laptop (dev), and operator commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGOGC is mocd's garbage-collection target when GOGC is not set.
// A request allocates tens of kilobytes and keeps none of them, and the
// live heap is a few megabytes, so Go's default (GOGC=100) collects many
// times a second: 8% of the api's CPU on a poll or an accept, 23% on a page
// of 50 operations (BenchmarkHotPath's gc-cpu-µs/op). At 400 the collector
// runs a fifth as often and spends about a quarter of that CPU; the price
// is a heap up to five times the live one (BENCHMARKS.md gives each
// process's peak resident memory). GOGC and GOMEMLIMIT, when set, are the
// runtime's as usual.
const defaultGOGC = 400

// tuneGC sets defaultGOGC unless GOGC is set (the runtime has read it).
func tuneGC(getenv env) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
}

func main() {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mocd:", err)
		os.Exit(1)
	}
}
