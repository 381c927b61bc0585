package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/myopenclaw/mocd/client"
)

// done is what moc prints for a call that answers no body (204): one JSON
// document still, so a script can check it.
type done struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted,omitempty"`
	Revoked bool   `json:"revoked,omitempty"`
}

func (a *app) printDone(d done) error {
	if a.json() {
		return writeJSON(a.io.Stdout, d)
	}
	what := "deleted"
	if d.Revoked {
		what = "revoked"
	}
	_, err := fmt.Fprintf(a.io.Stdout, "%s %s\n", d.ID, what)
	return err
}

func (a *app) keysCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "keys", Aliases: []string{"key"}, Short: "List, create, rotate and revoke API keys"})

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the account's keys", Args: noArgs,
		RunE: listRunE(a, (*client.Client).ListKeys),
	})

	var create struct {
		name, scopes, expiresAt string
		expiresIn               time.Duration
		idempotencyKey          string
	}
	createCmd := &cobra.Command{
		Use: "create --name NAME --scopes SCOPES", Short: "Create a key; its token is shown once", Args: noArgs,
		Example: "  moc keys create --name github-actions --scopes write\n  moc keys create --name reader --scopes instance:read,operations:read --expires-in 720h",
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := client.CreateKeyRequest{Name: create.name, Scopes: splitList(create.scopes)}
			if req.Name == "" || len(req.Scopes) == 0 {
				return usagef("--name and --scopes are required")
			}
			if create.expiresAt != "" && create.expiresIn != 0 {
				return usagef("give --expires-at or --expires-in, not both")
			}
			if create.expiresAt != "" {
				t, err := parseTime("expires-at", create.expiresAt)
				if err != nil {
					return err
				}
				req.ExpiresAt = &t
			}
			if create.expiresIn != 0 {
				t := time.Now().Add(create.expiresIn).UTC().Truncate(time.Second)
				req.ExpiresAt = &t
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var opts []client.CallOption
			if create.idempotencyKey != "" {
				opts = append(opts, client.WithIdempotencyKey(create.idempotencyKey))
			}
			k, err := c.CreateKey(cmd.Context(), req, opts...)
			if err != nil {
				return err
			}
			return a.print(k)
		},
	}
	createCmd.Flags().StringVar(&create.name, "name", "", "the key's name (required)")
	createCmd.Flags().StringVar(&create.scopes, "scopes", "", "comma-separated scopes or a preset: read-only, write, full (required)")
	createCmd.Flags().StringVar(&create.expiresAt, "expires-at", "", "when the key stops working (RFC 3339)")
	createCmd.Flags().DurationVar(&create.expiresIn, "expires-in", 0, "how long the key works (720h = 30 days)")
	createCmd.Flags().StringVar(&create.idempotencyKey, "idempotency-key", "", "Idempotency-Key to send (default a random one)")
	cmd.AddCommand(createCmd)

	var rotateKey string
	rotateCmd := &cobra.Command{
		Use: "rotate KEY_ID", Short: "Replace a key's token; the old one stops working", Args: exactArgs("KEY_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var opts []client.CallOption
			if rotateKey != "" {
				opts = append(opts, client.WithIdempotencyKey(rotateKey))
			}
			k, err := c.RotateKey(cmd.Context(), args[0], opts...)
			if err != nil {
				return err
			}
			return a.print(k)
		},
	}
	rotateCmd.Flags().StringVar(&rotateKey, "idempotency-key", "", "Idempotency-Key to send (default a random one)")
	cmd.AddCommand(rotateCmd)

	cmd.AddCommand(&cobra.Command{
		Use: "revoke KEY_ID", Short: "Revoke a key", Args: exactArgs("KEY_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RevokeKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.printDone(done{ID: args[0], Revoked: true})
		},
	})
	return cmd
}
