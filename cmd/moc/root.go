package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/myopenclaw/mocd/client"
)

// version is moc's version; it follows the SDK's.
const version = client.Version

// Exit codes: what a CI step branches on.
const (
	exitOK      = 0
	exitFailed  = 1 // the operation failed or was cancelled
	exitUsage   = 2 // bad usage
	exitAPI     = 3 // the API refused the call, or could not be reached
	exitTimeout = 4 // timed out waiting
)

// IO is everything moc reads and writes, so that tests run it in-process.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// The TTY flags decide tables, colour and the progress line.
	StdinTTY, StdoutTTY, StderrTTY bool
	// ReadSecret reads a line from the terminal without echo.
	ReadSecret func() ([]byte, error)
	// HTTPClient, when set, carries the API calls (tests check every
	// answer against the OpenAPI document through it).
	HTTPClient *http.Client
}

// app is one invocation's state, shared by the commands.
type app struct {
	io     IO
	apiURL string // --api-url
	output string // -o
	ctx    context.Context
}

// usageError is bad usage: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// run runs moc with args and answers its exit code.
func run(ctx context.Context, args []string, io IO) int {
	a := &app{io: io, ctx: ctx}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(io.Stdin)
	root.SetOut(io.Stdout)
	root.SetErr(io.Stderr)
	started := false
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		started = true
		return a.checkOutput()
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err, started)
	fmt.Fprintln(io.Stderr, "moc:", strings.TrimPrefix(err.Error(), "moc: "))
	if code == exitUsage && !started {
		fmt.Fprintln(io.Stderr, "Run 'moc --help' for usage.")
	}
	return code
}

// exitCode maps an error to the documented exit codes. Errors before a
// command ran are cobra's: an unknown command or flag, wrong arguments.
func exitCode(err error, started bool) int {
	var usage usageError
	var failed *client.OperationFailedError
	var apiErr *client.APIError
	var netErr *client.NetworkError
	switch {
	case errors.As(err, &usage) || !started:
		return exitUsage
	case errors.As(err, &failed):
		return exitFailed
	case errors.Is(err, context.DeadlineExceeded):
		return exitTimeout
	case errors.As(err, &apiErr), errors.As(err, &netErr):
		return exitAPI
	}
	return exitFailed
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "moc",
		Short: "The MyOpenClaw Developer API from the command line",
		Long: `moc drives MyOpenClaw instances: create, start, stop, restart and delete
them, follow their operations, and manage keys and webhooks.

Authentication: MOC_TOKEN, or a token saved by 'moc auth login'.
API: --api-url, MOC_API_URL, or ` + client.DefaultBaseURL + ` (with or without /api/v1).

Output is a table on a terminal and one JSON document otherwise (-o to choose).
Exit codes: 0 done, 1 the operation failed or was cancelled, 2 bad usage,
3 the API refused the call, 4 timed out waiting.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.apiURL, "api-url", "", "API base URL (default $MOC_API_URL, else the saved one, else "+client.DefaultBaseURL+")")
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "", "output format: table or json (default table on a terminal, json otherwise)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		a.authCommand(),
		a.instancesCommand(),
		a.operationsCommand(),
		a.keysCommand(),
		a.webhooksCommand(),
		a.logsCommand(),
		a.usageCommand(),
		a.accountCommand(),
		a.eventsCommand(),
		a.versionsCommand(),
		a.secretsCommand(),
	)
	return root
}

func (a *app) checkOutput() error {
	switch a.output {
	case "":
		a.output = "json"
		if a.io.StdoutTTY {
			a.output = "table"
		}
	case "json", "table":
	default:
		return usagef("-o %q: want table or json", a.output)
	}
	return nil
}

// json says whether output is for scripts.
func (a *app) json() bool { return a.output == "json" }

// baseURL is the API address in force.
func (a *app) baseURL(cfg config) string {
	switch {
	case a.apiURL != "":
		return a.apiURL
	case a.io.Getenv("MOC_API_URL") != "":
		return a.io.Getenv("MOC_API_URL")
	case cfg.APIURL != "":
		return cfg.APIURL
	}
	return client.DefaultBaseURL
}

// client builds the SDK client from the token and API address in force.
func (a *app) client() (*client.Client, error) {
	cfg, err := loadConfig(a.io.Getenv)
	if err != nil {
		return nil, err
	}
	token := a.io.Getenv("MOC_TOKEN")
	if token == "" {
		token = cfg.Token
	}
	if token == "" {
		return nil, usagef("no token: set MOC_TOKEN or run 'moc auth login'")
	}
	return a.newClient(token, a.baseURL(cfg))
}

func (a *app) newClient(token, baseURL string) (*client.Client, error) {
	opts := []client.Option{client.WithBaseURL(baseURL), client.WithUserAgent("moc-cli/" + version)}
	if a.io.HTTPClient != nil {
		opts = append(opts, client.WithHTTPClient(a.io.HTTPClient))
	}
	c, err := client.New(token, opts...)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// exactArgs is cobra.ExactArgs with a message naming what is missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef("%s: want %d argument(s) (%s), got %d", cmd.CommandPath(), len(names), strings.Join(names, ", "), len(args))
		}
		for i, v := range args {
			if strings.TrimSpace(v) == "" {
				return usagef("%s: %s is empty", cmd.CommandPath(), names[i])
			}
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// parseTime reads an RFC 3339 time or a date (YYYY-MM-DD, midnight UTC).
func parseTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--%s %q: want RFC 3339 (2026-11-30T12:00:00Z) or a date (2026-11-30)", flag, v)
}

// splitList reads a comma-separated flag value.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
