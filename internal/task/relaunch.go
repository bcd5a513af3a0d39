package task

import "fmt"

// relaunchErrorCap bounds the device errors of one refused relaunch, so that a list of 10,000
// wrong ids does not make the answer huge.
const relaunchErrorCap = 100

// The device selections of a relaunch.
const (
	// RelaunchFailed selects every device that did not succeed (RelaunchStatuses).
	RelaunchFailed = "failed"
	// RelaunchAll selects every device of the task.
	RelaunchAll = "all"
)

// RelaunchDraft is a relaunch as the caller sent it: which devices of a finished task to run
// the same script on again, and which settings change. A nil setting keeps the original's; a
// setting that is present is validated like a submitted one (Rules.Validate), so an explicit 0
// or "" is refused.
type RelaunchDraft struct {
	// Which is RelaunchFailed or RelaunchAll, or "" when DeviceIDs names the devices.
	Which string
	// DeviceIDs are the devices to relaunch when Which is "": devices of the task, each once.
	DeviceIDs              []string
	Args                   *[]string
	TimeoutSeconds         *int
	DeliveryTimeoutSeconds *int
	MaxConcurrency         *string
	MaxErrors              *string
}

// RelaunchStatuses are the device statuses RelaunchFailed selects: every ending but success.
func RelaunchStatuses() []DeviceStatus {
	return []DeviceStatus{DeviceFailed, DeviceTimedOut, DeviceUndeliverable, DeviceCancelled}
}

// CheckRelaunch reports whether t can be relaunched as d says: t must have ended (otherwise
// CodeConflict, carrying its status), and d must select devices in a way this package knows,
// a list naming devices of t, each once (otherwise CodeInvalid, by JSON pointer).
func CheckRelaunch(t *Task, d RelaunchDraft) error {
	if !t.Status.Terminal() {
		return &Error{Code: CodeConflict, Status: t.Status,
			Message: fmt.Sprintf("the task is %s; only a finished task can be relaunched", t.Status)}
	}
	var errs []FieldError
	switch d.Which {
	case RelaunchFailed, RelaunchAll:
	case "":
		if len(d.DeviceIDs) == 0 {
			errs = append(errs, FieldError{Pointer: "/devices", Detail: fmt.Sprintf(
				"name the devices to relaunch: %q, %q, or a list of device ids of the task", RelaunchFailed, RelaunchAll)})
		}
		member := make(map[string]bool, len(t.Request.DeviceIDs))
		for _, id := range t.Request.DeviceIDs {
			member[id] = true
		}
		seen := make(map[string]int, len(d.DeviceIDs))
		for i, id := range d.DeviceIDs {
			p := fmt.Sprintf("/devices/%d", i)
			if first, dup := seen[id]; dup {
				errs = append(errs, FieldError{Pointer: p, Detail: fmt.Sprintf("%q is a duplicate of /devices/%d", truncate(id, 140), first)})
				continue
			}
			seen[id] = i
			if !member[id] {
				errs = append(errs, FieldError{Pointer: p, Detail: fmt.Sprintf("%q is not a device of task %s", truncate(id, 140), t.ID)})
			}
			if len(errs) >= relaunchErrorCap {
				break
			}
		}
	default:
		errs = append(errs, FieldError{Pointer: "/devices", Detail: fmt.Sprintf(
			"%q is not a selection: use %q, %q, or a list of device ids of the task", truncate(d.Which, 140), RelaunchFailed, RelaunchAll)})
	}
	if len(errs) > 0 {
		return &Error{Code: CodeInvalid, Message: "the relaunch has invalid fields", Fields: errs}
	}
	return nil
}

// NothingToRelaunch is the error of a RelaunchFailed relaunch of a task whose every device
// succeeded.
func NothingToRelaunch(t *Task) error {
	return &Error{Code: CodeInvalid, Message: "nothing to relaunch: every device of the task succeeded",
		Fields: []FieldError{{Pointer: "/devices", Detail: fmt.Sprintf(
			"no device of task %s failed, timed out, was undeliverable or was cancelled", t.ID)}}}
}

// Draft is the submit draft of a relaunch of t on devices: t's script and settings (its
// webhook subscription too), with those d overrides. Rules.Validate judges it like any submitted request.
func (d RelaunchDraft) Draft(t *Task, devices []string) Draft {
	req := t.Request
	out := Draft{DeviceIDs: devices, ScriptURL: req.ScriptURL, Args: req.Args,
		TimeoutSeconds: &req.TimeoutSeconds, MaxConcurrency: &req.MaxConcurrency, MaxErrors: &req.MaxErrors}
	if d.Args != nil {
		out.Args = *d.Args
	}
	// The original's delivery timeout is kept with its timeout; a new timeout without a new
	// delivery timeout gets the default, which never exceeds it.
	if req.DeliveryTimeoutSeconds > 0 && d.TimeoutSeconds == nil {
		out.DeliveryTimeoutSeconds = &req.DeliveryTimeoutSeconds
	}
	if d.TimeoutSeconds != nil {
		out.TimeoutSeconds = d.TimeoutSeconds
	}
	if d.DeliveryTimeoutSeconds != nil {
		out.DeliveryTimeoutSeconds = d.DeliveryTimeoutSeconds
	}
	if d.MaxConcurrency != nil {
		out.MaxConcurrency = d.MaxConcurrency
	}
	if d.MaxErrors != nil {
		out.MaxErrors = d.MaxErrors
	}
	// The relaunch keeps the original's webhook subscription.
	if n := req.Notify; n != nil {
		events := make([]string, len(n.Events))
		for i, e := range n.Events {
			events[i] = string(e)
		}
		out.Notify = &NotifyDraft{URL: n.URL, Events: events}
	}
	return out
}
