package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/myopenclaw/mocd/client"
)

// group makes cmd a command that only holds subcommands: without one it
// prints its help; with an unknown one it is bad usage (exit 2).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return cmd.Help()
	}
	return cmd
}

// lifecycleFlags are the flags of every call that answers an operation.
type lifecycleFlags struct {
	wait           bool
	timeout        time.Duration
	idempotencyKey string
}

func (f *lifecycleFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.wait, "wait", false, "wait until the operation has ended (exit 1 if it failed, 4 on --timeout)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Minute, "with --wait: how long to wait")
	cmd.Flags().StringVar(&f.idempotencyKey, "idempotency-key", "", "Idempotency-Key to send (default a random one); the same key again replays the first answer")
}

func (f *lifecycleFlags) callOptions() []client.CallOption {
	if f.idempotencyKey == "" {
		return nil
	}
	return []client.CallOption{client.WithIdempotencyKey(f.idempotencyKey)}
}

// submit makes one call that answers an operation (with the flags'
// Idempotency-Key), then prints the operation, or waits for it with --wait.
func (a *app) submit(ctx context.Context, f *lifecycleFlags, call func(c *client.Client, opts []client.CallOption) (*client.Operation, error)) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	op, err := call(c, f.callOptions())
	if err != nil {
		return err
	}
	if !f.wait {
		return a.print(op)
	}
	return a.wait(ctx, c, op, f.timeout)
}

// wait follows an operation to its end and prints it: the final one, or
// the last seen when the timeout passes (exit 4) or it failed (exit 1).
func (a *app) wait(ctx context.Context, c *client.Client, accepted *client.Operation, timeout time.Duration) error {
	opID := accepted.ID
	if timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var opts []client.WaitOption
	stopProgress := func() {}
	if a.io.StdoutTTY && a.io.StderrTTY {
		p := newProgress(a.io.Stderr, "waiting for "+opID)
		opts = append(opts, client.WithProgress(func(op *client.Operation) {
			p.set(fmt.Sprintf("%s %s: %s", op.ID, op.Type, op.Status))
		}))
		stopProgress = p.stop
	}
	op, err := c.Wait(wctx, opID, opts...)
	stopProgress()
	if op == nil && accepted.Type != "" {
		op = accepted // never heard of since: as accepted, so stdout still names it
	}
	if op != nil {
		if perr := a.print(op); perr != nil && err == nil {
			err = perr
		}
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("timed out after %s waiting for operation %s: %w", timeout, opID, err)
	}
	return err
}

func (a *app) instancesCommand() *cobra.Command {
	cmd := group(&cobra.Command{Use: "instances", Aliases: []string{"instance", "inst"}, Short: "List, create, start, stop, restart, upgrade and delete instances"})

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the account's instances", Args: noArgs,
		RunE: listRunE(a, (*client.Client).ListInstances),
	})
	cmd.AddCommand(&cobra.Command{
		Use: "get INSTANCE_ID", Short: "Show one instance", Args: exactArgs("INSTANCE_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			inst, err := c.GetInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(inst)
		},
	})

	var create struct {
		lifecycleFlags
		subdomain, region, version string
	}
	createCmd := &cobra.Command{
		Use: "create --subdomain NAME [--region iad]", Short: "Create an instance", Args: noArgs,
		Example: "  moc instances create --subdomain my-claw --region lhr --wait",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if create.subdomain == "" {
				return usagef("--subdomain is required")
			}
			return a.submit(cmd.Context(), &create.lifecycleFlags, func(c *client.Client, opts []client.CallOption) (*client.Operation, error) {
				return c.CreateInstance(cmd.Context(), client.CreateInstanceRequest{Subdomain: create.subdomain, FlyRegion: create.region, Version: create.version}, opts...)
			})
		},
	}
	createCmd.Flags().StringVar(&create.subdomain, "subdomain", "", "the instance's DNS label (required)")
	createCmd.Flags().StringVar(&create.region, "region", "", "Fly.io region (default iad)")
	createCmd.Flags().StringVar(&create.version, "version", "", "OpenClaw version (default: the default of moc versions)")
	create.add(createCmd)
	cmd.AddCommand(createCmd, a.upgradeCommand())

	for _, lc := range []struct {
		name, short string
		call        func(*client.Client, context.Context, string, ...client.CallOption) (*client.Operation, error)
	}{
		{"start", "Start an instance", (*client.Client).StartInstance},
		{"stop", "Stop an instance", (*client.Client).StopInstance},
		{"restart", "Restart an instance", (*client.Client).RestartInstance},
		{"delete", "Delete an instance (its data too)", (*client.Client).DeleteInstance},
	} {
		var f lifecycleFlags
		c := &cobra.Command{
			Use: lc.name + " INSTANCE_ID", Short: lc.short, Args: exactArgs("INSTANCE_ID"),
			Example: "  moc instances " + lc.name + " inst_1L2mQKhvBh5qRMVRUR2g --wait --timeout 5m",
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.submit(cmd.Context(), &f, func(c *client.Client, opts []client.CallOption) (*client.Operation, error) {
					return lc.call(c, cmd.Context(), args[0], opts...)
				})
			},
		}
		f.add(c)
		cmd.AddCommand(c)
	}
	return cmd
}

// progress is the one line a terminal shows while moc waits: the
// operation's last known status and the time spent, redrawn every second
// and at every answer. Never on a pipe.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	line  string
	start time.Time
	done  chan struct{}
	tick  *time.Ticker
	ended bool
}

func newProgress(w io.Writer, line string) *progress {
	p := &progress{w: w, line: line, start: time.Now(), done: make(chan struct{}), tick: time.NewTicker(time.Second)}
	p.draw()
	go func() {
		for {
			select {
			case <-p.done:
				return
			case <-p.tick.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progress) set(line string) {
	p.mu.Lock()
	p.line = line
	p.mu.Unlock()
	p.draw()
}

func (p *progress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[2K%s … %s", p.line, time.Since(p.start).Truncate(time.Second))
}

// stop ends the ticker and clears the line.
func (p *progress) stop() {
	p.tick.Stop()
	close(p.done)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended = true
	fmt.Fprint(p.w, "\r\x1b[2K")
}
