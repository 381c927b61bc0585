package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/myopenclaw/mocd/client"
)

func (a *app) logsCommand() *cobra.Command {
	var f struct {
		pageFlags
		key, from, to string
	}
	cmd := &cobra.Command{
		Use: "logs", Short: "Read the audit log: every request that changed something, newest first", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			from, err := parseTime("from", f.from)
			if err != nil {
				return err
			}
			to, err := parseTime("to", f.to)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := collect(&f.pageFlags, c.AllLogs(cmd.Context(), client.ListLogsParams{KeyID: f.key, From: from, To: to, Limit: f.pageSize()}))
			if err != nil {
				return err
			}
			return a.print(list)
		},
	}
	cmd.Flags().StringVar(&f.key, "key", "", "only requests made with this key id")
	cmd.Flags().StringVar(&f.from, "from", "", "only entries at or after this time (RFC 3339 or YYYY-MM-DD)")
	cmd.Flags().StringVar(&f.to, "to", "", "only entries before this time (RFC 3339 or YYYY-MM-DD)")
	f.add(cmd)
	return cmd
}

func (a *app) usageCommand() *cobra.Command {
	var p client.GetUsageParams
	cmd := &cobra.Command{
		Use: "usage", Short: "Requests per key and instance-hours per instance, per day", Args: noArgs,
		RunE: a.withClient(func(ctx context.Context, c *client.Client) (any, error) {
			return c.GetUsage(ctx, p)
		}),
	}
	cmd.Flags().StringVar(&p.From, "from", "", "first UTC day, YYYY-MM-DD (default 29 days before --to)")
	cmd.Flags().StringVar(&p.To, "to", "", "last UTC day, YYYY-MM-DD (default today)")
	return cmd
}

func (a *app) accountCommand() *cobra.Command {
	return &cobra.Command{
		Use: "account", Short: "The account's plan, quota and rate limits", Args: noArgs,
		RunE: a.withClient(func(ctx context.Context, c *client.Client) (any, error) {
			return c.GetAccount(ctx)
		}),
	}
}

func (a *app) eventsCommand() *cobra.Command {
	var f struct {
		follow       bool
		after, types string
		limit        int
	}
	cmd := &cobra.Command{
		Use:   "events [--follow]",
		Short: "The account's events (what webhooks deliver), oldest first; --follow streams them",
		Long: `events prints the account's events after --after (a cursor), oldest first.
With --follow it keeps the stream open and prints each event as it happens:
one JSON document per line with -o json (each with its "cursor", to resume
with --after), a table row on a terminal. Ctrl-C ends it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var types []client.WebhookEventType
			for _, t := range splitList(f.types) {
				types = append(types, client.WebhookEventType(t))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if !f.follow {
				if f.limit < 1 || f.limit > 200 {
					return usagef("--limit %d: want 1–200", f.limit)
				}
				page, err := c.ListEvents(cmd.Context(), client.ListEventsParams{After: f.after, Types: types, Limit: f.limit})
				if err != nil {
					return err
				}
				if page.Data == nil {
					page.Data = []client.Event{}
				}
				if a.json() {
					return writeJSON(a.io.Stdout, page)
				}
				if err := a.print(page.Data); err != nil {
					return err
				}
				if page.NextCursor != nil {
					fmt.Fprintf(a.io.Stderr, "next: moc events --after %s\n", *page.NextCursor)
				}
				return nil
			}
			return a.follow(cmd.Context(), c, f.after, types)
		},
	}
	cmd.Flags().BoolVarP(&f.follow, "follow", "f", false, "stream events as they happen")
	cmd.Flags().StringVar(&f.after, "after", "", "start after this cursor")
	cmd.Flags().StringVar(&f.types, "types", "", "only these comma-separated event types")
	cmd.Flags().IntVar(&f.limit, "limit", 50, "without --follow: at most this many (1–200)")
	return cmd
}

// streamed is one line of `moc events --follow -o json`: the event and
// the cursor to resume after it.
type streamed struct {
	client.Event
	Cursor string `json:"cursor,omitempty"`
}

func (a *app) follow(ctx context.Context, c *client.Client, after string, types []client.WebhookEventType) error {
	enc := json.NewEncoder(a.io.Stdout)
	var tw *tabwriter.Writer
	if !a.json() {
		tw = tabwriter.NewWriter(a.io.Stdout, 0, 4, 2, ' ', 0)
		row(tw, "TIME", "TYPE", "ID", "SUBJECT")
		tw.Flush()
	}
	for ev, err := range c.StreamEvents(ctx, client.StreamEventsParams{After: after, Types: types}) {
		if err != nil {
			return err
		}
		if tw == nil {
			if err := enc.Encode(streamed{Event: ev, Cursor: ev.Cursor}); err != nil {
				return err
			}
			continue
		}
		a.eventRow(tw, ev)
		tw.Flush()
	}
	return nil
}

func (a *app) authCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "auth", Short: "Save, show or forget the API token"})
	login := &cobra.Command{
		Use:   "login",
		Short: "Check a token and save it for later commands",
		Long: `login reads a token (moc_…) from the terminal without echo, or from stdin
when piped (echo "$TOKEN" | moc auth login), checks it against the API, and
saves it in the user's configuration directory (mode 0600). MOC_TOKEN, when
set, still wins. --api-url (or MOC_API_URL) is saved with it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := a.readToken()
			if err != nil {
				return err
			}
			cfg, err := loadConfig(a.io.Getenv)
			if err != nil {
				return err
			}
			if a.apiURL != "" {
				cfg.APIURL = a.apiURL
			} else if v := a.io.Getenv("MOC_API_URL"); v != "" {
				cfg.APIURL = v
			}
			c, err := a.newClient(token, a.baseURL(cfg))
			if err != nil {
				return err
			}
			who := "a key without account:read"
			acct, err := c.GetAccount(cmd.Context())
			switch {
			case err == nil:
				who = acct.Email + " (" + acct.Plan + ")"
			case client.StatusOf(err) == http.StatusForbidden && client.CodeOf(err) == "insufficient_scope":
				// A valid token that may not read the account: fine.
			default:
				return fmt.Errorf("the API refused the token: %w", err)
			}
			cfg.Token = token
			p, err := saveConfig(a.io.Getenv, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Stderr, "Logged in to %s as %s; token saved in %s\n", c.BaseURL(), who, p)
			return nil
		},
	}
	logout := &cobra.Command{
		Use: "logout", Short: "Forget the saved token", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(a.io.Getenv)
			if err != nil {
				return err
			}
			cfg.Token = ""
			p, err := saveConfig(a.io.Getenv, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Stderr, "Token removed from %s\n", p)
			return nil
		},
	}
	status := &cobra.Command{
		Use: "status", Short: "Say which token and API moc uses (never the secret)", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(a.io.Getenv)
			if err != nil {
				return err
			}
			src, token := "MOC_TOKEN", a.io.Getenv("MOC_TOKEN")
			if token == "" {
				src, token = "saved by moc auth login", cfg.Token
			}
			if token == "" {
				return usagef("no token: set MOC_TOKEN or run 'moc auth login'")
			}
			st := struct {
				APIURL string `json:"api_url"`
				Prefix string `json:"token_prefix"`
				Source string `json:"source"`
			}{a.baseURL(cfg), tokenPrefix(token), src}
			if a.json() {
				return writeJSON(a.io.Stdout, st)
			}
			fmt.Fprintf(a.io.Stdout, "API    %s\nToken  %s… (%s)\n", st.APIURL, st.Prefix, st.Source)
			return nil
		},
	}
	cmd.AddCommand(login, logout, status)
	return cmd
}

// readToken reads the token to log in with: from the terminal without
// echo, or the first line of a piped stdin. Never from an argument, which
// would land in shell history and the process list.
func (a *app) readToken() (string, error) {
	line, err := a.readSecret("Paste your API token (moc_…): ")
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(line)
	if parts := strings.Split(token, "_"); len(parts) != 3 || parts[0] != "moc" || parts[1] == "" || parts[2] == "" {
		return "", usagef("that is not a token: want moc_<key-id>_<secret> on stdin")
	}
	return token, nil
}

// readSecret reads a secret the user must not type on the command line
// (where the shell's history and the process list keep it): from the
// terminal without echo after prompt, or all of a piped stdin (at most
// 64 KiB).
func (a *app) readSecret(prompt string) (string, error) {
	if a.io.StdinTTY && a.io.ReadSecret != nil {
		fmt.Fprint(a.io.Stderr, prompt)
		b, err := a.io.ReadSecret()
		fmt.Fprintln(a.io.Stderr)
		return string(b), err
	}
	b, err := io.ReadAll(io.LimitReader(a.io.Stdin, 64<<10))
	return string(b), err
}

// tokenPrefix is the public part of a token: moc_<key-id>.
func tokenPrefix(token string) string {
	if i := strings.LastIndexByte(token, '_'); i > 0 {
		return token[:i]
	}
	return "moc"
}
