package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

func (a *app) status(ctx context.Context, args []string) int {
	var c common
	fs := a.newFlagSet("status", "ID [flags]", "Shows a task: its status, progress and outcome.", &c)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return a.usageError(fs, err)
	}
	cl, err := a.connect(ctx, &c)
	if err != nil {
		return a.usageError(fs, err)
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

func (a *app) wait(ctx context.Context, args []string) int {
	var (
		c                 common
		cancelOnInterrupt bool
	)
	fs := a.newFlagSet("wait", "ID [flags]", "Follows a task to its end, showing progress, then summarises it and exits as\n\"fleetrun --help\" lists.", &c)
	fs.BoolVar(&cancelOnInterrupt, "cancel-on-interrupt", false, "cancel the task on Ctrl-C without asking")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return a.usageError(fs, err)
	}
	cl, err := a.connect(ctx, &c)
	if err != nil {
		return a.usageError(fs, err)
	}
	return a.follow(ctx, cl, pos[0], followOptions{json: c.json, cancelOnInterrupt: cancelOnInterrupt})
}

func (a *app) cancel(ctx context.Context, args []string) int {
	var (
		c    common
		wait bool
	)
	fs := a.newFlagSet("cancel", "ID [flags]", "Cancels a task: a pending task at once, a running one once its devices have stopped.\nCancelling a finished task is an error (exit 2) that says how it ended.", &c)
	fs.BoolVar(&wait, "wait", false, "follow the task until it has stopped, then exit as \"fleetrun --help\" lists")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return a.usageError(fs, err)
	}
	cl, err := a.connect(ctx, &c)
	if err != nil {
		return a.usageError(fs, err)
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

func (a *app) list(ctx context.Context, args []string) int {
	var (
		c      common
		status string
		limit  int
	)
	fs := a.newFlagSet("ls", "[flags]", "Lists your tasks, newest first.", &c)
	fs.StringVar(&status, "status", "", "only tasks in this `status` (pending, running, cancelling, completed, failed, timed_out, cancelled)")
	fs.IntVar(&limit, "limit", 20, "list at most `N` tasks; 0 lists them all")
	if _, err := parse(fs, args, 0); err != nil {
		return a.usageError(fs, err)
	}
	if limit < 0 {
		return a.usageError(fs, errors.New("--limit must not be negative"))
	}
	cl, err := a.connect(ctx, &c)
	if err != nil {
		return a.usageError(fs, err)
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

func (a *app) devices(ctx context.Context, args []string) int {
	var (
		c        common
		statuses listFlag
		limit    int
	)
	fs := a.newFlagSet("devices", "ID [flags]", "Lists a task's devices with their status, exit code and the first line of their\noutput (\"fleetrun output\" prints all of it).", &c)
	fs.Var(&statuses, "status", "only devices in these `statuses`, comma-separated (pending, running, succeeded,\nfailed, timed_out, cancelled, undeliverable)")
	fs.IntVar(&limit, "limit", 0, "list at most `N` devices; 0 lists them all")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return a.usageError(fs, err)
	}
	if limit < 0 {
		return a.usageError(fs, errors.New("--limit must not be negative"))
	}
	cl, err := a.connect(ctx, &c)
	if err != nil {
		return a.usageError(fs, err)
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

func (a *app) output(ctx context.Context, args []string) int {
	var (
		c      common
		stderr bool
	)
	fs := a.newFlagSet("output", "ID DEVICE [flags]", "Prints everything a device wrote to standard output (or, with --stderr, to\nstandard error), as it was written. --json does not apply.", &c)
	fs.BoolVar(&stderr, "stderr", false, "print standard error instead of standard output")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return a.usageError(fs, err)
	}
	cl, err := a.connect(ctx, &c)
	if err != nil {
		return a.usageError(fs, err)
	}
	stream := client.Stdout
	if stderr {
		stream = client.Stderr
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
