package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

func (a *app) statusCommand() *cobra.Command {
	return a.command("status ID", "Show a task", "Shows a task: its status, progress and outcome.", exactArgs(1),
		func(ctx context.Context, pos []string) int { return a.status(ctx, pos) })
}

func (a *app) status(ctx context.Context, pos []string) int {
	c := &a.common
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("status", err)
	}
	t, err := cl.Get(ctx, pos[0])
	if err != nil {
		return a.fail(ctx, err)
	}
	if c.json {
		printJSON(a.stdout, t)
	} else {
		printTask(a.stdout, t)
	}
	return ExitOK
}

func (a *app) waitCommand() *cobra.Command {
	var cancelOnInterrupt bool
	cmd := a.command("wait ID", "Follow a task to the end, showing progress",
		"Follows a task to its end, showing progress, then summarises it and exits as listed below.", exactArgs(1),
		func(ctx context.Context, pos []string) int {
			cl, err := a.connect(ctx, &a.common)
			if err != nil {
				return a.usageError("wait", err)
			}
			return a.follow(ctx, cl, pos[0], followOptions{json: a.common.json, cancelOnInterrupt: cancelOnInterrupt})
		})
	cmd.Flags().BoolVar(&cancelOnInterrupt, "cancel-on-interrupt", false, "cancel the task on Ctrl-C without asking")
	return cmd
}

func (a *app) cancelCommand() *cobra.Command {
	var (
		wait    bool
		devices listFlag
	)
	cmd := a.command("cancel ID [--device D]...", "Cancel a task, or some of its devices; --wait to follow until they stop",
		"Cancels a task: a pending task at once, a running one once its devices have stopped.\n"+
			"Cancelling a finished task is an error (exit 2) that says how it ended.\n\n"+
			"With --device, cancels only those devices and the task runs on: a device not started\n"+
			"never starts, a running one is stopped. With --wait, waits until each has stopped.", exactArgs(1),
		func(ctx context.Context, pos []string) int {
			if len(devices) > 0 {
				return a.cancelDevices(ctx, pos[0], devices, wait)
			}
			return a.cancel(ctx, pos, wait)
		})
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the task (or the devices) until stopped, then exit as listed below")
	cmd.Flags().Var(&devices, "device", "cancel only this device `id` (comma-separated, or repeat for several)")
	return cmd
}

func (a *app) cancel(ctx context.Context, pos []string, wait bool) int {
	c := &a.common
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("cancel", err)
	}
	t, err := cl.Cancel(ctx, pos[0])
	if err != nil {
		return a.fail(ctx, err)
	}
	if wait {
		if !c.json {
			fmt.Fprintf(a.stdout, "task %s is %s\n", t.ID, t.Status)
		}
		return a.follow(ctx, cl, t.ID, followOptions{json: c.json})
	}
	if c.json {
		printJSON(a.stdout, t)
	} else {
		fmt.Fprintf(a.stdout, "task %s is %s\n", t.ID, t.Status)
	}
	return ExitOK
}

func (a *app) listCommand() *cobra.Command {
	var (
		status string
		limit  int
	)
	cmd := a.command("ls", "List your tasks, newest first", "Lists your tasks, newest first.", exactArgs(0),
		func(ctx context.Context, _ []string) int { return a.list(ctx, status, limit) })
	cmd.Flags().StringVar(&status, "status", "", "only tasks in this `status` (pending, running, cancelling, completed, failed, timed_out, cancelled)")
	cmd.Flags().IntVar(&limit, "limit", 20, "list at most `N` tasks; 0 lists them all")
	return cmd
}

func (a *app) list(ctx context.Context, status string, limit int) int {
	c := &a.common
	if limit < 0 {
		return a.usageError("ls", errors.New("--limit must not be negative"))
	}
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("ls", err)
	}
	page := api.TaskList{Items: []api.Task{}}
	opts := client.ListOptions{Status: status}
	if limit > 0 {
		opts.PageSize = min(limit, 100)
	}
	for t, err := range cl.List(ctx, opts) {
		if err != nil {
			return a.fail(ctx, err)
		}
		page.Items = append(page.Items, t)
		if len(page.Items) == limit {
			break
		}
	}
	if c.json {
		printJSON(a.stdout, page)
		return ExitOK
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tDEVICES\tCREATED\tSCRIPT")
	for _, t := range page.Items {
		d := t.Progress.Devices
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Status, done(d), d.Total,
			t.CreatedAt.Local().Format(time.DateTime), t.Request.ScriptURL)
	}
	tw.Flush()
	return ExitOK
}

func (a *app) devicesCommand() *cobra.Command {
	var (
		statuses listFlag
		limit    int
	)
	cmd := a.command("devices ID", "List a task's devices: state, exit code, output",
		"Lists a task's devices with their status, exit code and the first line of their\noutput (\"fleetrun output\" prints all of it).", exactArgs(1),
		func(ctx context.Context, pos []string) int { return a.devices(ctx, pos, statuses, limit) })
	cmd.Flags().Var(&statuses, "status", "only devices in these `statuses`, comma-separated (pending, running, succeeded,\nfailed, timed_out, cancelled, undeliverable)")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most `N` devices; 0 lists them all")
	return cmd
}

func (a *app) devices(ctx context.Context, pos []string, statuses listFlag, limit int) int {
	c := &a.common
	if limit < 0 {
		return a.usageError("devices", errors.New("--limit must not be negative"))
	}
	cl, err := a.connect(ctx, c)
	if err != nil {
		return a.usageError("devices", err)
	}
	page := api.DeviceList{Items: []api.Device{}}
	opts := client.DeviceOptions{Statuses: statuses}
	if limit > 0 {
		opts.PageSize = min(limit, 100)
	}
	for d, err := range cl.Devices(ctx, pos[0], opts) {
		if err != nil {
			return a.fail(ctx, err)
		}
		page.Items = append(page.Items, d)
		if len(page.Items) == limit {
			break
		}
	}
	if c.json {
		printJSON(a.stdout, page)
		return ExitOK
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEVICE\tSTATUS\tEXIT\tOUTPUT")
	for _, d := range page.Items {
		writeDeviceRow(tw, &d)
	}
	tw.Flush()
	return ExitOK
}

func (a *app) outputCommand() *cobra.Command {
	var stderr, follow bool
	cmd := a.command("output ID DEVICE", "Print a device's full output; -f to follow it",
		"Prints everything a device wrote to standard output (or, with --stderr, to\nstandard error), as it was written. With -f, prints it as it is written and ends\nwhen the device ends. --json does not apply.", exactArgs(2),
		func(ctx context.Context, pos []string) int { return a.output(ctx, pos, stderr, follow) })
	cmd.Flags().BoolVar(&stderr, "stderr", false, "print standard error instead of standard output")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "print the output as it is written, until the device ends")
	return cmd
}

func (a *app) output(ctx context.Context, pos []string, stderr, follow bool) int {
	cl, err := a.connect(ctx, &a.common)
	if err != nil {
		return a.usageError("output", err)
	}
	stream := client.Stdout
	if stderr {
		stream = client.Stderr
	}
	if follow {
		return a.followOutput(ctx, cl, pos[0], pos[1], stream)
	}
	rc, err := cl.Output(ctx, pos[0], pos[1], stream)
	if err != nil {
		return a.fail(ctx, err)
	}
	defer rc.Close()
	if _, err := io.Copy(a.stdout, rc); err != nil {
		return a.fail(ctx, fmt.Errorf("read output of %s: %w", strings.Join(pos, " "), err))
	}
	return ExitOK
}
