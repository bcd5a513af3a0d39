package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/client"
)

// fail prints err and returns the exit code it stands for: ExitUsage for a request the API
// refused (4xx), ExitInterrupted when ctx was interrupted, ExitUnavailable otherwise.
func (a *app) fail(ctx context.Context, err error) int {
	if e, ok := client.AsError(err); ok {
		printProblem(a.stderr, e)
		if e.Status >= 400 && e.Status < 500 {
			return ExitUsage
		}
		return ExitUnavailable
	}
	if ctx.Err() != nil && errors.Is(err, context.Cause(ctx)) {
		fmt.Fprintln(a.stderr, "fleetrun: interrupted")
		return ExitInterrupted
	}
	fmt.Fprintf(a.stderr, "fleetrun: %v\n", err)
	return ExitUnavailable
}

// printProblem prints a problem response: title, status and detail, then each invalid field
// as "pointer: detail", then what can be quoted to support.
func printProblem(w io.Writer, e *client.Error) {
	fmt.Fprintf(w, "fleetrun: %s (%d)", e.Title, e.Status)
	if e.Detail != "" {
		fmt.Fprintf(w, ": %s", e.Detail)
	}
	fmt.Fprintln(w)
	for _, f := range e.Errors {
		fmt.Fprintf(w, "  %s: %s\n", f.Pointer, f.Detail)
	}
	if e.TaskStatus != "" && !strings.Contains(e.Detail, e.TaskStatus) {
		fmt.Fprintf(w, "  task status: %s\n", e.TaskStatus)
	}
	if e.DeviceStatus != "" && !strings.Contains(e.Detail, e.DeviceStatus) {
		fmt.Fprintf(w, "  device status: %s\n", e.DeviceStatus)
	}
	if e.RequestID != "" {
		fmt.Fprintf(w, "  request id: %s\n", e.RequestID)
	}
}

// printJSON prints v as indented JSON, as the API would send it.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// done is how many of a task's devices are in a terminal state.
func done(c api.DeviceCounts) int {
	return c.Succeeded + c.Failed + c.TimedOut + c.Cancelled + c.Undeliverable
}

// finishedCounts says how the finished devices ended, "1 succeeded, 1 failed", leaving out
// states nobody is in.
func finishedCounts(c api.DeviceCounts) string {
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{{c.Succeeded, "succeeded"}, {c.Failed, "failed"}, {c.TimedOut, "timed out"},
		{c.Undeliverable, "undeliverable"}, {c.Cancelled, "cancelled"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	return strings.Join(parts, ", ")
}

// allCounts is finishedCounts with the devices still pending and running.
func allCounts(c api.DeviceCounts) string {
	var parts []string
	if c.Running > 0 {
		parts = append(parts, fmt.Sprintf("%d running", c.Running))
	}
	if c.Pending > 0 {
		parts = append(parts, fmt.Sprintf("%d pending", c.Pending))
	}
	if f := finishedCounts(c); f != "" {
		parts = append(parts, f)
	}
	return strings.Join(parts, ", ")
}

// plural says n things: "1 device", "3 devices".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// unsuccessful counts the devices that ended badly.
func unsuccessful(c api.DeviceCounts) int { return c.Failed + c.TimedOut + c.Undeliverable }

// taskExit is the exit code a finished task stands for.
func taskExit(t *api.Task) int {
	switch t.Status {
	case api.StatusCompleted:
		if unsuccessful(t.Progress.Devices) > 0 {
			return ExitTaskFailed
		}
		return ExitOK
	case api.StatusFailed:
		return ExitTaskFailed
	case api.StatusCancelled, api.StatusTimedOut:
		return ExitCancelled
	}
	return ExitUnavailable
}

// printTask prints a task for a person.
func printTask(w io.Writer, t *api.Task) {
	c := t.Progress.Devices
	fmt.Fprintf(w, "task      %s\n", t.ID)
	fmt.Fprintf(w, "status    %s\n", t.Status)
	if t.Progress.CurrentStep != "" && !api.Terminal(t.Status) {
		fmt.Fprintf(w, "step      %s\n", t.Progress.CurrentStep)
	}
	fmt.Fprintf(w, "script    %s", t.Request.ScriptURL)
	for _, arg := range t.Request.Args {
		fmt.Fprintf(w, " %q", arg)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "devices   %d/%d done (%d%%)", done(c), c.Total, t.Progress.Percentage)
	if s := allCounts(c); s != "" {
		fmt.Fprintf(w, ": %s", s)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "created   %s\n", t.CreatedAt.Local().Format(time.RFC3339))
	if t.StartedAt != nil {
		fmt.Fprintf(w, "started   %s\n", t.StartedAt.Local().Format(time.RFC3339))
	}
	if t.CompletedAt != nil {
		fmt.Fprintf(w, "finished  %s (took %s)\n", t.CompletedAt.Local().Format(time.RFC3339), took(t))
	}
	if t.Result != nil && t.Result.Reason != "" {
		fmt.Fprintf(w, "reason    %s\n", t.Result.Reason)
	}
}

// took is how long a finished task ran, from creation to completion.
func took(t *api.Task) time.Duration {
	if t.CompletedAt == nil {
		return 0
	}
	return t.CompletedAt.Sub(t.CreatedAt).Round(10 * time.Millisecond)
}

// firstLine is the first non-blank line of s, trimmed and shortened to fit a terminal line.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			if r := []rune(line); len(r) > 100 {
				return string(r[:99]) + "…"
			}
			return line
		}
	}
	return ""
}
