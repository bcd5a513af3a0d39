package task

import (
	"fmt"
	"slices"
)

// Status is the state of a task. The transitions table below is the whole machine; it is drawn
// in docs/state-machine.md, whose table a test compares with this one.
//
// Every change of status is a conditional write on the current status and version, built by
// the constructors in transition.go and refused by every store unless the table allows it, so a
// duplicated or late event can never move a task backwards or out of a terminal state.
type Status string

const (
	// StatusPending means the task is stored and queued but no device has been started.
	StatusPending Status = "pending"
	// StatusRunning means the task has been dispatched to its runner and devices are working.
	StatusRunning Status = "running"
	// StatusCancelling means a cancel was asked for while the task ran; the runner is stopping
	// the devices and the task becomes cancelled once every device has reached a terminal state.
	StatusCancelling Status = "cancelling"
	// StatusCompleted means every device reached a terminal state within maxErrors; the result
	// says which devices succeeded and which did not.
	StatusCompleted Status = "completed"
	// StatusFailed means the task itself could not run, or more devices failed than maxErrors
	// allows.
	StatusFailed Status = "failed"
	// StatusTimedOut means the task's deadline (startedAt + timeoutSeconds) passed before every
	// device finished; the devices still working were stopped and marked timed_out.
	StatusTimedOut Status = "timed_out"
	// StatusCancelled means the task was cancelled: before it started, or after every device
	// confirmed that it stopped.
	StatusCancelled Status = "cancelled"
)

// Statuses lists every task status in the order of the machine.
func Statuses() []Status {
	return []Status{StatusPending, StatusRunning, StatusCancelling, StatusCompleted,
		StatusFailed, StatusTimedOut, StatusCancelled}
}

// Terminal reports whether s is final: no write may move a task out of it.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusTimedOut, StatusCancelled:
		return true
	}
	return false
}

// Valid reports whether s is one of the known task statuses.
func (s Status) Valid() bool {
	return slices.Contains(Statuses(), s)
}

// Event is something that happens to a task and may change its status.
type Event string

const (
	// EventDispatch is the executor handing a pending task to its runner.
	EventDispatch Event = "dispatch"
	// EventCancel is a caller asking for the task to stop.
	EventCancel Event = "cancel"
	// EventFinish is every device having reached a terminal state within maxErrors.
	EventFinish Event = "finish"
	// EventFail is the task being unable to run, or maxErrors being exceeded.
	EventFail Event = "fail"
	// EventDeadline is the task's deadline passing with devices still working.
	EventDeadline Event = "deadline"
	// EventStep is the runner recording what a running task is doing when the status alone
	// does not say it (its devices wait for a free slot on the server); the status stays.
	EventStep Event = "step"
)

// Events lists every task event.
func Events() []Event {
	return []Event{EventDispatch, EventCancel, EventFinish, EventFail, EventDeadline, EventStep}
}

// transitions is the whole task state machine: for each status, the events it accepts and the
// status each leads to. A pair that is not here is refused with CodeConflict.
var transitions = map[Status]map[Event]Status{
	StatusPending: {
		EventDispatch: StatusRunning,
		EventCancel:   StatusCancelled,
		EventFail:     StatusFailed,
	},
	StatusRunning: {
		EventCancel:   StatusCancelling,
		EventFinish:   StatusCompleted,
		EventFail:     StatusFailed,
		EventDeadline: StatusTimedOut,
		EventStep:     StatusRunning,
	},
	StatusCancelling: {
		// A repeated cancel leaves the task where it is; the caller sees the current state.
		EventCancel: StatusCancelling,
		// The devices confirming that they stopped is what ends a cancel.
		EventFinish: StatusCancelled,
		EventFail:   StatusFailed,
		// A deadline during a cancel still ends as a cancel: the caller's intent wins.
		EventDeadline: StatusCancelled,
	},
	StatusCancelled: {
		// Cancel is idempotent: cancelling a cancelled task answers with the task as it is.
		EventCancel: StatusCancelled,
	},
}

// Next returns the status that event e moves a task in status s to. It returns an *Error with
// code CodeConflict, carrying s, when the machine does not allow e in s.
func (s Status) Next(e Event) (Status, error) {
	if next, ok := transitions[s][e]; ok {
		return next, nil
	}
	return "", &Error{Code: CodeConflict, Status: s, Message: fmt.Sprintf("a task that is %s cannot take %q", s, e)}
}

// DeviceStatus is the state of one device of a task. A device moves forward only, along the
// deviceMoves table: pending → running → one terminal state, or pending straight to one.
type DeviceStatus string

const (
	// DevicePending means the device has not been started yet. Devices have no stored record
	// until their first update, so every device of a new task is pending.
	DevicePending DeviceStatus = "pending"
	// DeviceRunning means the script is running on the device.
	DeviceRunning DeviceStatus = "running"
	// DeviceSucceeded means the script exited with status 0.
	DeviceSucceeded DeviceStatus = "succeeded"
	// DeviceFailed means the script exited non-zero, or could not be started on the device.
	DeviceFailed DeviceStatus = "failed"
	// DeviceTimedOut means the script was stopped because the task's deadline passed.
	DeviceTimedOut DeviceStatus = "timed_out"
	// DeviceCancelled means the device was stopped, or never started, because of a cancel or
	// because maxErrors was exceeded.
	DeviceCancelled DeviceStatus = "cancelled"
	// DeviceUndeliverable means the script could not be delivered to the device at all (SSM:
	// the managed node is unknown, offline or terminated).
	DeviceUndeliverable DeviceStatus = "undeliverable"
)

// DeviceStatuses lists every device status.
func DeviceStatuses() []DeviceStatus {
	return []DeviceStatus{DevicePending, DeviceRunning, DeviceSucceeded, DeviceFailed,
		DeviceTimedOut, DeviceCancelled, DeviceUndeliverable}
}

// deviceEndings are the terminal device statuses: the ways a device's work can end.
var deviceEndings = []DeviceStatus{DeviceSucceeded, DeviceFailed, DeviceTimedOut, DeviceCancelled, DeviceUndeliverable}

// deviceMoves is every move a device may make: for each status, the statuses a runner's update
// may move it to. A status with no row is final. Moves go forward only, so a duplicated or
// reordered update is refused rather than applied twice; Device.Apply is where it is used.
var deviceMoves = map[DeviceStatus][]DeviceStatus{
	DevicePending: append([]DeviceStatus{DeviceRunning}, deviceEndings...),
	DeviceRunning: deviceEndings,
}

// DeviceEvent is something a caller asks of one device of a task, as opposed to a runner's
// report of where the device is (a DeviceUpdate with no Event).
type DeviceEvent string

const (
	// DeviceEventCancel is a caller asking for one device to stop, or never to start, while
	// the task goes on with its other devices.
	DeviceEventCancel DeviceEvent = "cancel"
)

// DeviceEvents lists every device event.
func DeviceEvents() []DeviceEvent {
	return []DeviceEvent{DeviceEventCancel}
}

// deviceEvents is what a caller's event does to a device: for each status, the events it
// accepts and the status each leads to. A pair that is not here is refused with CodeConflict,
// carrying the device's status: an ended device cannot be cancelled.
//
// A pending device is cancelled at once and never starts. A running one stays running, marked
// as asked to stop (Device.CancelRequestedAt), until its runner reports that it stopped: the
// runner's cancelled update is a move deviceMoves already allows. Cancel is idempotent: a
// repeated cancel of a running device, or a cancel of a cancelled one, changes nothing.
var deviceEvents = map[DeviceStatus]map[DeviceEvent]DeviceStatus{
	DevicePending:   {DeviceEventCancel: DeviceCancelled},
	DeviceRunning:   {DeviceEventCancel: DeviceRunning},
	DeviceCancelled: {DeviceEventCancel: DeviceCancelled},
}

// On returns the status that event e moves a device in status d to. It returns an *Error
// with code CodeConflict, carrying d, when the table does not allow e in d.
func (d DeviceStatus) On(e DeviceEvent) (DeviceStatus, error) {
	if next, ok := deviceEvents[d][e]; ok {
		return next, nil
	}
	return "", &Error{Code: CodeConflict, DeviceStatus: d, Message: fmt.Sprintf("a device that is %s cannot take %q", d, e)}
}

// UnstartedAtEnd is what a device that never started becomes once its task has ended: it never
// will start. Task.Unstarted and Counts.Ended both follow it, so a device is listed and counted
// the same way.
const UnstartedAtEnd = DeviceCancelled

// Terminal reports whether d is final for the device.
func (d DeviceStatus) Terminal() bool {
	return slices.Contains(deviceEndings, d)
}

// Valid reports whether d is one of the known device statuses.
func (d DeviceStatus) Valid() bool {
	return slices.Contains(DeviceStatuses(), d)
}

// CountsAsError reports whether d counts against maxErrors, the way SSM counts errors.
func (d DeviceStatus) CountsAsError() bool {
	return d == DeviceFailed || d == DeviceTimedOut || d == DeviceUndeliverable
}

// CanMove reports whether a device in status d may move to status to (see deviceMoves).
func (d DeviceStatus) CanMove(to DeviceStatus) bool {
	return slices.Contains(deviceMoves[d], to)
}

// String implements fmt.Stringer.
func (s Status) String() string { return string(s) }

// String implements fmt.Stringer.
func (d DeviceStatus) String() string { return string(d) }
