package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/myopenclaw/mocd/client"
)

// listRunE runs a list call and prints its answer; an empty list prints
// as [] (never null) with -o json.
func listRunE[T any](a *app, list func(*client.Client, context.Context) ([]T, error)) func(*cobra.Command, []string) error {
	return a.withClient(func(ctx context.Context, c *client.Client) (any, error) {
		v, err := list(c, ctx)
		if v == nil {
			v = []T{}
		}
		return v, err
	})
}

func (a *app) versionsCommand() *cobra.Command {
	return &cobra.Command{
		Use: "versions", Short: "The OpenClaw versions an instance can run, newest first; one is the default", Args: noArgs,
		RunE: listRunE(a, (*client.Client).ListVersions),
	}
}

// upgradeCommand is `moc instances upgrade`.
func (a *app) upgradeCommand() *cobra.Command {
	var f struct {
		lifecycleFlags
		version string
	}
	cmd := &cobra.Command{
		Use:   "upgrade INSTANCE_ID --version VERSION",
		Short: "Move an instance to another OpenClaw version; rolled back if it does not come up healthy",
		Args:  exactArgs("INSTANCE_ID"),
		Example: "  moc instances upgrade inst_1L2mQKhvBh5qRMVRUR2g --version 2026.1.30 --wait\n" +
			"  (exit 1 with error.code upgrade_rolled_back when the new version failed its health check)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.version == "" {
				return usagef("--version is required (moc versions lists them)")
			}
			return a.submit(cmd.Context(), &f.lifecycleFlags, func(c *client.Client, opts []client.CallOption) (*client.Operation, error) {
				return c.UpgradeInstance(cmd.Context(), args[0], client.UpgradeRequest{Version: f.version}, opts...)
			})
		},
	}
	cmd.Flags().StringVar(&f.version, "version", "", "the version to run (required)")
	f.add(cmd)
	return cmd
}

func (a *app) secretsCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "secrets", Aliases: []string{"secret"}, Short: "List, set and delete an instance's secrets (write-only: values are never shown)"})

	cmd.AddCommand(&cobra.Command{
		Use: "list INSTANCE_ID", Short: "List an instance's secrets: names, keyed digests and update times", Args: exactArgs("INSTANCE_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listRunE(a, func(c *client.Client, ctx context.Context) ([]client.Secret, error) {
				return c.ListSecrets(ctx, args[0])
			})(cmd, args)
		},
	})

	var set lifecycleFlags
	setCmd := &cobra.Command{
		Use:   "set INSTANCE_ID NAME",
		Short: "Set a secret from standard input and apply it to the machine (an instance.configure operation)",
		Long: "Reads the value from the terminal without echo, or from standard input when piped, so\n" +
			"that it never appears in the shell's history or the process list; one trailing newline\n" +
			"is dropped. The instance's machine gets every secret as an environment variable; a\n" +
			"running instance restarts to take them.",
		Args:    exactArgs("INSTANCE_ID", "NAME"),
		Example: "  printf %s \"$ANTHROPIC_API_KEY\" | moc secrets set inst_1L2mQKhvBh5qRMVRUR2g ANTHROPIC_API_KEY --wait",
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.readSecret("Value of " + args[1] + " (not echoed): ")
			if err != nil {
				return fmt.Errorf("read the value: %w", err)
			}
			value := strings.TrimSuffix(strings.TrimSuffix(in, "\n"), "\r")
			if value == "" {
				return usagef("the value is empty: give it on standard input")
			}
			return a.submit(cmd.Context(), &set, func(c *client.Client, opts []client.CallOption) (*client.Operation, error) {
				return c.PutSecret(cmd.Context(), args[0], args[1], client.PutSecretRequest{Value: value}, opts...)
			})
		},
	}
	set.add(setCmd)
	cmd.AddCommand(setCmd)

	var del lifecycleFlags
	delCmd := &cobra.Command{
		Use: "delete INSTANCE_ID NAME", Short: "Delete a secret and take it out of the machine's environment", Args: exactArgs("INSTANCE_ID", "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.submit(cmd.Context(), &del, func(c *client.Client, opts []client.CallOption) (*client.Operation, error) {
				return c.DeleteSecret(cmd.Context(), args[0], args[1], opts...)
			})
		},
	}
	del.add(delCmd)
	cmd.AddCommand(delCmd)
	return cmd
}
