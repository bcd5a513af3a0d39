package task

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Device is the state of one device of a task.
type Device struct {
	TaskID          string       `json:"taskId"`
	ID              string       `json:"id"`
	Status          DeviceStatus `json:"status"`
	ExitCode        *int         `json:"exitCode"`
	Stdout          string       `json:"stdout"`
	Stderr          string       `json:"stderr"`
	StdoutTruncated bool         `json:"stdoutTruncated"`
	StderrTruncated bool         `json:"stderrTruncated"`
	StartedAt       *time.Time   `json:"startedAt,omitempty"`
	CompletedAt     *time.Time   `json:"completedAt,omitempty"`
	// Reason says, for a person, why a device did not succeed when the exit code alone does not
	// (never started, lost in a restart, undeliverable).
	Reason string `json:"reason,omitempty"`
	// Ref is the runner's own handle for the device (an SSM command id, a local process group),
	// so a runner can find its work again after a restart.
	Ref string `json:"ref,omitempty"`
	// CancelRequestedAt is when a caller asked for this device alone to be cancelled
	// (DeviceEventCancel), nil if nobody did. A running device keeps running, so marked, until
	// its runner reports that it stopped.
	CancelRequestedAt *time.Time `json:"cancelRequestedAt,omitempty"`
}

// Output limits: the inline copies of a device's output are cut like SSM cuts them, in bytes
// and on a UTF-8 boundary, so that a device record always fits its store.
const (
	StdoutInlineLimit = 24000
	StderrInlineLimit = 8000
)

// DeviceUpdate is a runner's report that a device moved to a new status, or, when Event is
// set, a caller's event (built by CancelDevice). Updates may arrive twice or out of order;
// Device.Apply decides what each one changes.
type DeviceUpdate struct {
	DeviceID string
	// Event is the caller's event this update carries, "" for a runner's report. Status must
	// then be where the deviceEvents table leads, or the update is ignored.
	Event  DeviceEvent
	Status DeviceStatus
	// At is when the device moved; the store's time when zero.
	At       time.Time
	ExitCode *int
	// Stdout and Stderr are the device's output as far as the runner has it; the truncated
	// flags say that the runner already cut it.
	Stdout          string
	Stderr          string
	StdoutTruncated bool
	StderrTruncated bool
	Reason          string
	Ref             string
}

// Applied says what Device.Apply did with an update.
type Applied int

const (
	// Ignored means the update changed nothing: a move the device may not make (a duplicate,
	// a move backwards, out of a terminal state or to an unknown status).
	Ignored Applied = iota
	// Moved means the device moved to the update's status: the task's counts change with it.
	Moved
	// Refreshed means a running or terminal device kept its status and took a longer copy of
	// its output: a running device's output as far as it has been written, or, for an ended
	// one, SSM's full output (GetCommandInvocation) arriving after the shorter copy a poll saw
	// first. The task's counts do not change.
	Refreshed
	// Marked means a running device kept its status and was marked as asked to stop
	// (CancelRequestedAt). The task's counts do not change.
	Marked
)

// Apply applies u to d at time now (when u.At is zero), the one rule both stores follow:
//
//   - A move the deviceMoves table allows is made: the status, the start or completion time,
//     and whatever u reports (exit code, output, reason, ref). Empty fields of u keep d's, so
//     a terminal update without a Ref keeps the Ref of the running one.
//   - Output is cut at StdoutInlineLimit and StderrInlineLimit on a UTF-8 boundary. A stream
//     u reports replaces d's, and its truncated flag is u's, or true when Apply cut it.
//   - On a running or terminal device, an update with the same status whose output is
//     longer replaces the shorter copy, stream by stream, and changes nothing else: that is
//     how a running device's inline output follows what it writes.
//   - A caller's event (u.Event) is taken where the deviceEvents table allows it and u.Status
//     is where the table leads: the device records when it was asked (CancelRequestedAt) and
//     moves if the table moves it (a pending device is cancelled, with u's reason). A running
//     device asked to stop a second time, or a cancelled one asked again, is unchanged.
//   - Anything else is ignored and leaves d as it was.
func (d *Device) Apply(u DeviceUpdate, now time.Time) Applied {
	at := u.At
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	if u.Event != "" {
		return d.take(u, at)
	}
	if u.Status == d.Status && (d.Status.Terminal() || d.Status == DeviceRunning) {
		return d.refresh(u)
	}
	if !d.Status.CanMove(u.Status) {
		return Ignored
	}
	d.Status = u.Status
	if u.Status == DeviceRunning {
		d.StartedAt = &at
	}
	if u.Status.Terminal() {
		d.CompletedAt = &at
	}
	if u.ExitCode != nil {
		d.ExitCode = new(*u.ExitCode)
	}
	if u.Stdout != "" || u.StdoutTruncated {
		d.Stdout, d.StdoutTruncated = inline(u.Stdout, u.StdoutTruncated, StdoutInlineLimit)
	}
	if u.Stderr != "" || u.StderrTruncated {
		d.Stderr, d.StderrTruncated = inline(u.Stderr, u.StderrTruncated, StderrInlineLimit)
	}
	if u.Reason != "" {
		d.Reason = u.Reason
	}
	if u.Ref != "" {
		d.Ref = u.Ref
	}
	return Moved
}

// take applies a caller's event at time at (see Apply).
func (d *Device) take(u DeviceUpdate, at time.Time) Applied {
	next, err := d.Status.On(u.Event)
	if err != nil || next != u.Status {
		return Ignored
	}
	if next == d.Status {
		if d.Status.Terminal() || d.CancelRequestedAt != nil {
			return Ignored // asked already, or ended already: nothing changes
		}
		d.CancelRequestedAt = &at
		return Marked
	}
	d.Status, d.CancelRequestedAt = next, &at
	if next.Terminal() {
		d.CompletedAt = new(at)
	}
	if u.Reason != "" {
		d.Reason = u.Reason
	}
	return Moved
}

// CancelDevice builds the update that cancels device d of task t at time at, for a store's
// ApplyDeviceUpdates: a pending device becomes cancelled at once, a running one is marked as
// asked to stop; for a device already cancelled, or marked, the update changes nothing
// (Apply ignores it). It refuses, with CodeConflict, a task that has ended (carrying its
// status) and a device that ended otherwise (carrying the device's status).
func CancelDevice(t *Task, d *Device, at time.Time) (DeviceUpdate, error) {
	if t.Status.Terminal() {
		return DeviceUpdate{}, &Error{Code: CodeConflict, Status: t.Status, DeviceStatus: d.Status,
			Message: fmt.Sprintf("the task is %s: its devices can no longer be cancelled", t.Status)}
	}
	next, err := d.Status.On(DeviceEventCancel)
	if err != nil {
		return DeviceUpdate{}, &Error{Code: CodeConflict, Status: t.Status, DeviceStatus: d.Status,
			Message: fmt.Sprintf("device %s is %s and can no longer be cancelled", d.ID, d.Status)}
	}
	u := DeviceUpdate{DeviceID: d.ID, Event: DeviceEventCancel, Status: next, At: at}
	if next != d.Status {
		u.Reason = "cancelled by request before it started"
	}
	return u, nil
}

// ApplyEnded applies u to d, a device of a task that has ended, whose devices no longer move:
// only a longer copy of a terminal device's output is taken (Refreshed), as Apply takes it, so
// that SSM's full copy replaces the short one a poll saw even when that poll ended the task.
// Everything else is Ignored.
func (d *Device) ApplyEnded(u DeviceUpdate) Applied {
	if !d.Status.Terminal() || u.Status != d.Status {
		return Ignored
	}
	return d.refresh(u)
}

// refresh takes the longer copy of each stream of a terminal device's output.
func (d *Device) refresh(u DeviceUpdate) Applied {
	out := Ignored
	if stdout, cut := inline(u.Stdout, u.StdoutTruncated, StdoutInlineLimit); len(stdout) > len(d.Stdout) {
		d.Stdout, d.StdoutTruncated, out = stdout, cut, Refreshed
	}
	if stderr, cut := inline(u.Stderr, u.StderrTruncated, StderrInlineLimit); len(stderr) > len(d.Stderr) {
		d.Stderr, d.StderrTruncated, out = stderr, cut, Refreshed
	}
	return out
}

// inline cuts s to at most limit bytes, on a UTF-8 boundary, and says whether it is cut: by the
// runner already (truncated) or here.
func inline(s string, truncated bool, limit int) (string, bool) {
	if len(s) <= limit {
		return s, truncated
	}
	i := limit
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], true
}
