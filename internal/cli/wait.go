package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// followOptions say how a task is followed to its end.
type followOptions struct {
	json bool
	// cancelOnInterrupt cancels the task when the wait is interrupted, without asking.
	cancelOnInterrupt bool
}

// follow waits for task id to finish, showing its progress, then prints the outcome and
// returns the exit code it stands for. An interrupted wait (ctx ended) offers to cancel the
// task: see interrupted.
func (a *app) follow(ctx context.Context, c *client.Client, id string, o followOptions) int {
	p := a.newProgress(o.json)
	t, err := c.Wait(ctx, id, p.Update)
	p.Close()
	if err != nil {
		if ctx.Err() != nil {
			return a.interrupted(ctx, c, id, o)
		}
		return a.fail(ctx, err)
	}
	return a.finish(ctx, c, t, o.json)
}

// newProgress picks the progress display: a bar when a person watches stdout on a terminal
// of known width, lines otherwise. With --json, stdout is kept for the final JSON and the lines go to stderr.
func (a *app) newProgress(json bool) progress {
	switch {
	case json:
		return &lineProgress{w: a.stderr, now: a.now}
	case a.isTerminal(a.stdout) && a.termWidth(a.stdout) > 0:
		// A terminal that reports no width (0 columns, as some do under a pipe-like pty or a
		// CI runner) would draw an invisible bar.
		return newBarProgress(a.stdout)
	default:
		return &lineProgress{w: a.stdout, now: a.now}
	}
}

// interrupted handles Ctrl-C during a wait. The task is cancelled when --cancel-on-interrupt
// says so or the user says yes on the terminal; then the command follows the task until it
// stops (at most cancelWait), on a context of its own since ctx is already over, and exits as
// the task ended. Otherwise the task is left running and the exit code is ExitInterrupted.
func (a *app) interrupted(ctx context.Context, c *client.Client, id string, o followOptions) int {
	cancel := o.cancelOnInterrupt
	if !cancel && a.isTerminal(a.stdin) {
		cancel = a.confirm(fmt.Sprintf("Cancel task %s? [y/N] ", id))
	}
	if !cancel {
		fmt.Fprintf(a.stderr, "fleetrun: stopped waiting; task %s goes on (\"fleetrun wait %s\" follows it again)\n", id, id)
		return ExitInterrupted
	}
	bg, stop := context.WithTimeout(context.WithoutCancel(ctx), a.cancelWait)
	defer stop()
	t, err := c.Cancel(bg, id)
	if client.IsConflict(err) {
		// It finished before the cancel reached it: report how.
		if t, err = c.Get(bg, id); err == nil {
			return a.finish(bg, c, t, o.json)
		}
	}
	if err != nil {
		return a.fail(bg, err)
	}
	fmt.Fprintf(a.stderr, "fleetrun: task %s is %s\n", id, t.Status)
	if !api.Terminal(t.Status) {
		p := a.newProgress(o.json)
		t, err = c.Wait(bg, id, p.Update)
		p.Close()
		if err != nil && bg.Err() != nil {
			fmt.Fprintf(a.stderr, "fleetrun: task %s is still cancelling after %s\n", id, a.cancelWait)
			return ExitCancelled
		}
		if err != nil {
			return a.fail(bg, err)
		}
	}
	return a.finish(bg, c, t, o.json)
}

// confirm asks question on stderr and reads the answer from stdin: only y or yes agree.
func (a *app) confirm(question string) bool {
	fmt.Fprint(a.stderr, question)
	answer, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && answer == "" {
		fmt.Fprintln(a.stderr)
		return false
	}
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes"
}

// maxListedDevices bounds the failed devices a summary names; the devices command lists all.
const maxListedDevices = 20

// finish prints a finished task (its JSON, or a summary that names the devices that did not
// succeed, with their exit code and first line of stderr) and returns its exit code.
func (a *app) finish(ctx context.Context, c *client.Client, t *api.Task, json bool) int {
	code := taskExit(t)
	if json {
		if err := printJSON(a.stdout, t); err != nil {
			return a.fail(ctx, err)
		}
		return code
	}
	counts := t.Progress.Devices
	fmt.Fprintf(a.stdout, "task %s %s in %s: %s", t.ID, t.Status, took(t), plural(counts.Total, "device"))
	if s := allCounts(counts); s != "" {
		fmt.Fprintf(a.stdout, ", %s", s)
	}
	fmt.Fprintln(a.stdout)
	if t.Result != nil && t.Result.Reason != "" {
		fmt.Fprintf(a.stdout, "reason: %s\n", t.Result.Reason)
	}
	if unsuccessful(counts) > 0 {
		a.printFailedDevices(ctx, c, t)
	}
	return code
}

// failedStatuses are the device states a summary reports.
var failedStatuses = []string{api.DeviceFailed, api.DeviceTimedOut, api.DeviceUndeliverable}

func (a *app) printFailedDevices(ctx context.Context, c *client.Client, t *api.Task) {
	fmt.Fprintln(a.stdout, "devices that did not succeed:")
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	n := 0
	for d, err := range c.Devices(ctx, t.ID, client.DeviceOptions{Statuses: failedStatuses, PageSize: maxListedDevices}) {
		if err != nil {
			tw.Flush()
			fmt.Fprintf(a.stderr, "fleetrun: list failed devices: %v\n", err)
			return
		}
		if n == maxListedDevices {
			break
		}
		n++
		writeDeviceRow(tw, &d)
	}
	tw.Flush()
	if more := unsuccessful(t.Progress.Devices) - n; more > 0 {
		fmt.Fprintf(a.stdout, "  … and %d more: fleetrun devices %s --status %s\n", more, t.ID, strings.Join(failedStatuses, ","))
	}
}

// writeDeviceRow writes one device as a table row: id, status, exit code, and the first line
// of its stderr (or, when it wrote none, of its stdout, or the reason it ended).
func writeDeviceRow(w io.Writer, d *api.Device) {
	exit := "-"
	if d.ExitCode != nil {
		exit = fmt.Sprintf("exit %d", *d.ExitCode)
	}
	fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", d.ID, d.Status, exit, first(firstLine(d.Stderr), firstLine(d.Reason), firstLine(d.Stdout)))
}
