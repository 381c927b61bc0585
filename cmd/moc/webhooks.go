package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/myopenclaw/mocd/client"
)

func (a *app) webhooksCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "webhooks", Aliases: []string{"webhook", "wh"}, Short: "Manage webhook endpoints, see deliveries, forward events locally"})

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List webhook endpoints", Args: noArgs,
		RunE: listRunE(a, (*client.Client).ListWebhooks),
	})

	var create struct{ url, events, idempotencyKey string }
	createCmd := &cobra.Command{
		Use: "create --url URL --events TYPES", Short: "Create an endpoint; its signing secret is shown once", Args: noArgs,
		Example: "  moc webhooks create --url https://hooks.example.com/moc --events operation.succeeded,operation.failed",
		RunE: func(cmd *cobra.Command, _ []string) error {
			events := splitList(create.events)
			if create.url == "" || len(events) == 0 {
				return usagef("--url and --events are required")
			}
			req := client.CreateWebhookRequest{URL: create.url}
			for _, e := range events {
				req.Events = append(req.Events, client.WebhookEventType(e))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var opts []client.CallOption
			if create.idempotencyKey != "" {
				opts = append(opts, client.WithIdempotencyKey(create.idempotencyKey))
			}
			wh, err := c.CreateWebhook(cmd.Context(), req, opts...)
			if err != nil {
				return err
			}
			return a.print(wh)
		},
	}
	createCmd.Flags().StringVar(&create.url, "url", "", "the https:// URL to deliver to (required)")
	createCmd.Flags().StringVar(&create.events, "events", "", "comma-separated event types: operation.succeeded, operation.failed, instance.status_changed, webhook.test (required)")
	createCmd.Flags().StringVar(&create.idempotencyKey, "idempotency-key", "", "Idempotency-Key to send (default a random one)")
	cmd.AddCommand(createCmd)

	cmd.AddCommand(&cobra.Command{
		Use: "delete WEBHOOK_ID", Short: "Delete an endpoint", Args: exactArgs("WEBHOOK_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteWebhook(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.printDone(done{ID: args[0], Deleted: true})
		},
	})

	cmd.AddCommand(&cobra.Command{
		Use: "test WEBHOOK_ID", Short: "Send a webhook.test event to an endpoint", Args: exactArgs("WEBHOOK_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.TestWebhook(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(d)
		},
	})

	var deliveries struct {
		pageFlags
		status string
	}
	deliveriesCmd := &cobra.Command{
		Use: "deliveries WEBHOOK_ID", Short: "List an endpoint's deliveries, newest first, with every attempt", Args: exactArgs("WEBHOOK_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := deliveries.check(); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := collect(&deliveries.pageFlags, c.AllWebhookDeliveries(cmd.Context(), args[0], client.ListWebhookDeliveriesParams{
				Status: client.DeliveryStatus(deliveries.status), Limit: deliveries.pageSize(),
			}))
			if err != nil {
				return err
			}
			return a.print(list)
		},
	}
	deliveriesCmd.Flags().StringVar(&deliveries.status, "status", "", "only deliveries in this status (pending, succeeded, failed)")
	deliveries.add(deliveriesCmd)
	cmd.AddCommand(deliveriesCmd)

	cmd.AddCommand(a.listenCommand())
	return cmd
}

// forwarded is one line of `moc webhooks listen -o json`.
type forwarded struct {
	EventID    string `json:"event_id"`
	Type       string `json:"type"`
	StatusCode int    `json:"status_code,omitempty"`
	Error      string `json:"error,omitempty"`
}

func (a *app) listenCommand() *cobra.Command {
	var f struct {
		forwardTo, secret, events, after string
	}
	cmd := &cobra.Command{
		Use:   "listen --forward-to URL",
		Short: "Forward the account's events, signed, to a local receiver",
		Long: `listen reads the account's event stream and POSTs each event to --forward-to
exactly as a webhook delivery: the same body, and the Standard Webhooks headers
(webhook-id, webhook-timestamp, webhook-signature) signed with a local secret
that it prints (or --secret). Develop a receiver without a public URL or tunnel;
verify with the printed secret as you would with an endpoint's.`,
		Example: "  moc webhooks listen --forward-to http://localhost:3000/webhooks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := url.Parse(f.forwardTo)
			if f.forwardTo == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("--forward-to: want an http(s) URL, got %q", f.forwardTo)
			}
			secret := f.secret
			if secret == "" {
				if secret, err = client.NewWebhookSecret(); err != nil {
					return err
				}
			} else if _, err := client.SignWebhook(secret, "check", time.Now(), nil); err != nil {
				return usageError{err}
			}
			var only []client.WebhookEventType
			for _, e := range splitList(f.events) {
				only = append(only, client.WebhookEventType(e))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Stderr, "Ready. Forwarding events to %s\nSigning secret: %s\n", f.forwardTo, secret)
			return a.listen(cmd.Context(), c, f.forwardTo, secret, f.after, only)
		},
	}
	cmd.Flags().StringVar(&f.forwardTo, "forward-to", "", "the local receiver's URL (required)")
	cmd.Flags().StringVar(&f.secret, "secret", "", "sign with this whsec_ secret instead of a fresh one")
	cmd.Flags().StringVar(&f.events, "events", "", "forward only these comma-separated event types")
	cmd.Flags().StringVar(&f.after, "after", "", "start after this event cursor (default: events from now on)")
	return cmd
}

// listen forwards events until ctx ends (Ctrl-C) or the stream fails for
// good. A receiver that fails is reported and the next event still goes.
func (a *app) listen(ctx context.Context, c *client.Client, to, secret, after string, only []client.WebhookEventType) error {
	hc := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for ev, err := range c.StreamEvents(ctx, client.StreamEventsParams{After: after, Types: only}) {
		if err != nil {
			return err
		}
		line := forwarded{EventID: ev.ID, Type: string(ev.Type)}
		status, ferr := forward(ctx, hc, to, secret, ev)
		line.StatusCode = status
		if ferr != nil {
			line.Error = ferr.Error()
		}
		if a.json() {
			if err := json.NewEncoder(a.io.Stdout).Encode(line); err != nil {
				return err
			}
		} else {
			result := fmt.Sprint(status)
			if ferr != nil {
				result = ferr.Error()
			}
			fmt.Fprintf(a.io.Stdout, "%s  --> %s [%s]  <-- %s\n", time.Now().Format("15:04:05"), ev.Type, ev.ID, result)
		}
	}
	// The stream ends only with ctx (Ctrl-C): a clean end.
	return nil
}

// forward POSTs one event as a webhook delivery would, signed with secret.
func forward(ctx context.Context, hc *http.Client, to, secret string, ev client.Event) (int, error) {
	body, err := json.Marshal(ev.Envelope())
	if err != nil {
		return 0, err
	}
	h, err := client.SignWebhook(secret, ev.ID, time.Now(), body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "moc-cli/"+version+" (webhooks listen)")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return resp.StatusCode, nil
}
