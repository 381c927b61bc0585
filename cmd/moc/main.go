// Command moc is the command line of the MyOpenClaw Developer API, built on
// the Go SDK (github.com/myopenclaw/mocd/client): every lifecycle call can
// --wait for its operation, every write is safe to retry, tables are for
// people and JSON for scripts, and the exit code says what happened:
//
//	0  done
//	1  the operation failed or was cancelled (or moc itself failed)
//	2  bad usage: an unknown command or flag, a missing argument or token
//	3  the API refused the call (an HTTP error), or could not be reached
//	4  timed out waiting for an operation
//
// The token comes from MOC_TOKEN or `moc auth login`; the API from
// --api-url, MOC_API_URL or the default https://www.myopenclaw.cloud.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], IO{
		Stdin:     os.Stdin,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		Getenv:    os.Getenv,
		StdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		StdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		StderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
		ReadSecret: func() ([]byte, error) {
			return term.ReadPassword(int(os.Stdin.Fd()))
		},
	})
	stop()
	os.Exit(code)
}
