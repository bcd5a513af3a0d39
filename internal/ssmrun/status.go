package ssmrun

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// StatusFor maps an SSM invocation status and its status details to a device status. The
// details decide first, because SSM reports several distinct endings under one status (an
// undeliverable node is Failed/Undeliverable). Either spelling of the details is accepted
// ("DeliveryTimedOut" from ListCommandInvocations, "Delivery Timed Out" from
// GetCommandInvocation), and status alone works too, as in EventBridge events.
//
//	Pending, Delayed                          → pending (SSM has not started the device)
//	InProgress, Cancelling                    → running
//	Success                                   → succeeded
//	Failed                                    → failed
//	TimedOut, ExecutionTimedOut               → timed_out
//	Cancelled                                 → cancelled
//	DeliveryTimedOut, Undeliverable, Terminated,
//	InvalidPlatform, AccessDenied             → undeliverable (the script never ran there)
//
// Anything else maps to pending, which callers treat as nothing to report.
func StatusFor(status, details string) task.DeviceStatus {
	if _, ok := undelivered[normalize(details)]; ok {
		return task.DeviceUndeliverable
	}
	switch normalize(details) {
	case "executiontimedout":
		return task.DeviceTimedOut
	}
	if _, ok := undelivered[normalize(status)]; ok {
		return task.DeviceUndeliverable
	}
	switch normalize(status) {
	case "inprogress", "cancelling":
		return task.DeviceRunning
	case "success":
		return task.DeviceSucceeded
	case "failed":
		return task.DeviceFailed
	case "timedout", "executiontimedout":
		return task.DeviceTimedOut
	case "cancelled", "canceled":
		return task.DeviceCancelled
	}
	return task.DevicePending
}

// undelivered are SSM's endings of an invocation that never ran the script, by their
// normalized spelling: SSM's own name for each and what it means, for the device's reason.
var undelivered = map[string]struct{ name, meaning string }{
	"deliverytimedout": {"DeliveryTimedOut", "the managed node did not pick the command up within the task's deliveryTimeoutSeconds; it is offline, stopped or its agent is not running"},
	"undeliverable":    {"Undeliverable", "SSM could not deliver the command; the managed node is unknown, stopped or not responding"},
	"terminated":       {"Terminated", "SSM never sent the command to this node because its batch exceeded maxErrors"},
	"invalidplatform":  {"InvalidPlatform", "the managed node's platform does not match the document"},
	"accessdenied":     {"AccessDenied", "the managed node may not run the command (the document or its parameters are not allowed there)"},
}

// StatusOf maps a ListCommandInvocations invocation to a device status (see StatusFor).
func StatusOf(inv types.CommandInvocation) task.DeviceStatus {
	return StatusFor(string(inv.Status), aws.ToString(inv.StatusDetails))
}

// EventStatus maps the status of an "EC2 Command Invocation Status-change Notification" event
// to a device status; details is the event's status-details when present, else "".
func EventStatus(status, details string) task.DeviceStatus {
	return StatusFor(status, details)
}

// Plugin output as ListCommandInvocations reports it: the agent joins stdout and stderr with a
// separator and SSM keeps the first 2,500 characters, ending a cut output with a marker.
const (
	pluginOutputLimit = 2500
	errorSeparator    = "\n----------ERROR-------\n"
	truncatedMarker   = "\n---Output truncated---"
)

// update turns a listed invocation into a device update; ok is false while SSM has not started
// the device.
func (r *Runner) update(inv types.CommandInvocation, now time.Time) (task.DeviceUpdate, bool) {
	st := StatusOf(inv)
	if st == task.DevicePending {
		return task.DeviceUpdate{}, false
	}
	commandID, instanceID := aws.ToString(inv.CommandId), aws.ToString(inv.InstanceId)
	u := task.DeviceUpdate{DeviceID: instanceID, Status: st, At: now, Ref: commandID}
	if !st.Terminal() {
		return u, true
	}
	p := r.plugin(inv.CommandPlugins)
	code, step := int32(-1), ""
	if p != nil {
		code, step = p.ResponseCode, aws.ToString(p.Name)
		u.Stdout, u.Stderr, u.StdoutTruncated, u.StderrTruncated = splitOutput(aws.ToString(p.Output))
	}
	u.ExitCode = exitCode(st, code)
	u.Reason = reason(st, string(inv.Status), aws.ToString(inv.StatusDetails), step, r.cfg.PluginName, code)
	return u, true
}

// plugin picks the step whose result a device reports: a step that failed or timed out (a
// failed download explains a device better than the script step it skipped), else the
// configured script step, else the last step.
func (r *Runner) plugin(plugins []types.CommandPlugin) *types.CommandPlugin {
	if len(plugins) == 0 {
		return nil
	}
	for i, p := range plugins {
		if p.Status == types.CommandPluginStatusFailed || p.Status == types.CommandPluginStatusTimedOut {
			return &plugins[i]
		}
	}
	for i, p := range plugins {
		if aws.ToString(p.Name) == r.cfg.PluginName {
			return &plugins[i]
		}
	}
	return &plugins[len(plugins)-1]
}

// splitOutput separates a plugin output into stdout and stderr and says which one SSM cut.
// When the cut fell in stdout, stderr is lost entirely and reported empty.
func splitOutput(out string) (stdout, stderr string, stdoutCut, stderrCut bool) {
	cut := strings.HasSuffix(out, truncatedMarker) || len(out) >= pluginOutputLimit
	out = strings.TrimSuffix(out, truncatedMarker)
	stdout, stderr, hasErr := strings.Cut(out, errorSeparator)
	if hasErr {
		stderrCut = cut
	} else {
		stdoutCut = cut
	}
	stdout, c1 := capped(stdout, task.StdoutInlineLimit)
	stderr, c2 := capped(stderr, task.StderrInlineLimit)
	return stdout, stderr, stdoutCut || c1, stderrCut || c2
}

// exitCode is the script's exit status when it has one: SSM reports -1 for a step that never
// ran or was stopped.
func exitCode(st task.DeviceStatus, code int32) *int {
	if code < 0 || (st != task.DeviceSucceeded && st != task.DeviceFailed) {
		return nil
	}
	return new(int(code))
}

// reason explains, for a person, an ending the exit code alone does not. An undelivered
// device's reason names SSM's own status, so that it can be looked up in SSM's documentation.
func reason(st task.DeviceStatus, status, details, step, scriptStep string, code int32) string {
	switch st {
	case task.DeviceFailed:
		switch {
		case step != "" && scriptStep != "" && step != scriptStep:
			return fmt.Sprintf("the document step %s failed before the script ran", step)
		case code < 0:
			return fmt.Sprintf("SSM reports the invocation failed (%s) without an exit code", details)
		}
	case task.DeviceTimedOut:
		return "the script ran past its execution timeout and was stopped"
	case task.DeviceUndeliverable:
		u, ok := undelivered[normalize(details)]
		if !ok {
			u = undelivered[normalize(status)]
		}
		return fmt.Sprintf("SSM reports %s: %s", u.name, u.meaning)
	}
	return ""
}
