package main

import (
	"context"
	"iter"
	"time"

	"github.com/spf13/cobra"

	"github.com/myopenclaw/mocd/client"
)

// pageFlags bound how much of a cursor-paged list moc prints: --limit
// items (walking pages as needed), or --all of them.
type pageFlags struct {
	limit int
	all   bool
}

func (f *pageFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.limit, "limit", 50, "print at most this many (newest first)")
	cmd.Flags().BoolVar(&f.all, "all", false, "print every one, walking all pages")
}

func (f *pageFlags) check() error {
	if !f.all && (f.limit < 1 || f.limit > 10000) {
		return usagef("--limit %d: want 1–10000 (or --all)", f.limit)
	}
	return nil
}

// pageSize is the page size to ask for: the API's largest unless fewer
// items are wanted.
func (f *pageFlags) pageSize() int {
	if f.all {
		return 200
	}
	return min(f.limit, 200)
}

// collect gathers items of an iterator up to the flags' bound.
func collect[T any](f *pageFlags, seq iter.Seq2[T, error]) ([]T, error) {
	out := []T{}
	for item, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, item)
		if !f.all && len(out) >= f.limit {
			break
		}
	}
	return out, nil
}

func (a *app) operationsCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "operations", Aliases: []string{"operation", "ops", "op"}, Short: "Follow, list and cancel operations"})

	cmd.AddCommand(&cobra.Command{
		Use: "get OPERATION_ID", Short: "Show one operation", Args: exactArgs("OPERATION_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			op, err := c.GetOperation(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(op)
		},
	})

	var list struct {
		pageFlags
		instance, status, opType, after, before string
	}
	listCmd := &cobra.Command{
		Use: "list", Short: "List operations, newest first", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := list.check(); err != nil {
				return err
			}
			after, err := parseTime("created-after", list.after)
			if err != nil {
				return err
			}
			before, err := parseTime("created-before", list.before)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ops, err := collect(&list.pageFlags, c.AllOperations(cmd.Context(), client.ListOperationsParams{
				InstanceID: list.instance, Status: client.OperationStatus(list.status), Type: client.OperationType(list.opType),
				CreatedAfter: after, CreatedBefore: before, Limit: list.pageSize(),
			}))
			if err != nil {
				return err
			}
			return a.print(ops)
		},
	}
	listCmd.Flags().StringVar(&list.instance, "instance", "", "only this instance's operations")
	listCmd.Flags().StringVar(&list.status, "status", "", "only operations in this status (pending, running, succeeded, failed, cancelled)")
	listCmd.Flags().StringVar(&list.opType, "type", "", "only operations of this type (instance.create, instance.restart, …)")
	listCmd.Flags().StringVar(&list.after, "created-after", "", "only operations created at or after this time (RFC 3339 or YYYY-MM-DD)")
	listCmd.Flags().StringVar(&list.before, "created-before", "", "only operations created before this time (RFC 3339 or YYYY-MM-DD)")
	list.add(listCmd)
	cmd.AddCommand(listCmd)

	var timeout time.Duration
	waitCmd := &cobra.Command{
		Use: "wait OPERATION_ID", Short: "Wait until an operation has ended (exit 1 if it failed, 4 on --timeout)", Args: exactArgs("OPERATION_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.wait(cmd.Context(), c, &client.Operation{ID: args[0]}, timeout)
		},
	}
	waitCmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait")
	cmd.AddCommand(waitCmd)

	var cancel lifecycleFlags
	cancelCmd := &cobra.Command{
		Use: "cancel OPERATION_ID", Short: "Cancel a pending operation", Args: exactArgs("OPERATION_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			op, err := c.CancelOperation(cmd.Context(), args[0], cancel.callOptions()...)
			if err != nil {
				return err
			}
			return a.print(op)
		},
	}
	cancelCmd.Flags().StringVar(&cancel.idempotencyKey, "idempotency-key", "", "Idempotency-Key to send (default a random one)")
	cmd.AddCommand(cancelCmd)
	return cmd
}

// withClient runs f with a client; the shape of most read commands.
func (a *app) withClient(f func(ctx context.Context, c *client.Client) (any, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		v, err := f(cmd.Context(), c)
		if err != nil {
			return err
		}
		return a.print(v)
	}
}
