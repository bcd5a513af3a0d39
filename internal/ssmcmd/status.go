package ssmcmd

import (
	"strings"

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

// EventStatus maps the status of an "EC2 Command Invocation Status-change Notification" event
// to a device status; details is the event's status-details when present, else "".
func EventStatus(status, details string) task.DeviceStatus {
	return StatusFor(status, details)
}

// Undelivered returns SSM's own name for an ending of an invocation that never ran the script,
// and what it means, from the invocation's status details or, without them, its status.
func Undelivered(status, details string) (name, meaning string) {
	u, ok := undelivered[normalize(details)]
	if !ok {
		u = undelivered[normalize(status)]
	}
	return u.name, u.meaning
}

// normalize lowercases a status and removes the spaces GetCommandInvocation puts in some
// status details ("Delivery Timed Out"), so that both spellings compare equal.
func normalize(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, " ", ""))
}
