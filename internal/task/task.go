package task

import (
	"time"
)

// Request is what a caller asked for when submitting a task. It is stored with the task and
// never changes.
type Request struct {
	// DeviceIDs are the devices to run the script on, unique, in the order given.
	DeviceIDs []string `json:"deviceIds"`
	// ScriptURL names the script: an S3 object on AWS, a file under the script root locally.
	ScriptURL string `json:"scriptUrl"`
	// Args are passed to the script as arguments, never spliced into a shell line.
	Args []string `json:"args"`
	// TimeoutSeconds bounds the whole task: at startedAt + TimeoutSeconds every device still
	// working is stopped and the task ends timed_out.
	TimeoutSeconds int `json:"timeoutSeconds"`
	// DeliveryTimeoutSeconds bounds how long a device may stay undelivered: a device that has
	// not picked the script up by then is undeliverable (on AWS it is SSM's delivery timeout).
	// The local runner starts every device itself, so there it has no effect.
	DeliveryTimeoutSeconds int `json:"deliveryTimeoutSeconds,omitempty"`
	// MaxConcurrency is how many devices run at once: a count ("10") or a share ("10%").
	MaxConcurrency string `json:"maxConcurrency"`
	// MaxErrors is how many device errors are tolerated before the remaining devices are not
	// started and the task fails: a count ("0") or a share ("10%").
	MaxErrors string `json:"maxErrors"`
	// Targets are the tag targets DeviceIDs were resolved from when the task was submitted,
	// nil when the caller named the devices; IncludeOffline says offline devices were asked
	// for too.
	Targets        []Target `json:"targets,omitempty"`
	IncludeOffline bool     `json:"includeOffline,omitempty"`
	// Notify, when set, is where the task's webhook events are posted.
	Notify *Notify `json:"notify,omitempty"`
}

// Counts holds how many devices of a task are in each status. It is kept in the task record and
// updated in the same atomic write as each device, so reading progress never scans devices.
type Counts struct {
	Total         int `json:"total"`
	Pending       int `json:"pending"`
	Running       int `json:"running"`
	Succeeded     int `json:"succeeded"`
	Failed        int `json:"failed"`
	TimedOut      int `json:"timedOut"`
	Cancelled     int `json:"cancelled"`
	Undeliverable int `json:"undeliverable"`
}

// Add changes the count for status d by n.
func (c *Counts) Add(d DeviceStatus, n int) {
	switch d {
	case DevicePending:
		c.Pending += n
	case DeviceRunning:
		c.Running += n
	case DeviceSucceeded:
		c.Succeeded += n
	case DeviceFailed:
		c.Failed += n
	case DeviceTimedOut:
		c.TimedOut += n
	case DeviceCancelled:
		c.Cancelled += n
	case DeviceUndeliverable:
		c.Undeliverable += n
	}
}

// Of returns the count for status d.
func (c Counts) Of(d DeviceStatus) int {
	switch d {
	case DevicePending:
		return c.Pending
	case DeviceRunning:
		return c.Running
	case DeviceSucceeded:
		return c.Succeeded
	case DeviceFailed:
		return c.Failed
	case DeviceTimedOut:
		return c.TimedOut
	case DeviceCancelled:
		return c.Cancelled
	case DeviceUndeliverable:
		return c.Undeliverable
	}
	return 0
}

// Done returns how many devices are in a terminal state.
func (c Counts) Done() int {
	return c.Succeeded + c.Failed + c.TimedOut + c.Cancelled + c.Undeliverable
}

// Ended returns the counts of a task that has just ended: the devices still pending never
// started and never will, so they count as UnstartedAtEnd, as Task.Unstarted lists them.
func (c Counts) Ended() Counts {
	c.Add(UnstartedAtEnd, c.Pending)
	c.Pending = 0
	return c
}

// Errors returns how many devices count against maxErrors.
func (c Counts) Errors() int {
	return c.Failed + c.TimedOut + c.Undeliverable
}

// Percentage is the share of devices in a terminal state, rounded down, 0 to 100.
func (c Counts) Percentage() int {
	if c.Total == 0 {
		return 0
	}
	return c.Done() * 100 / c.Total
}

// Result summarises a finished task. It is computed once, when the task reaches a terminal
// state, and stored with it, so that reading a result never lists devices.
type Result struct {
	// SucceededDevices are the ids of devices that succeeded, at most ResultListCap of them.
	SucceededDevices []string `json:"succeededDevices"`
	// FailedDevices are the ids of devices that failed, timed out or were undeliverable, at
	// most ResultListCap of them.
	FailedDevices []string `json:"failedDevices"`
	// CancelledDevices are the ids of devices that were stopped or never started, at most
	// ResultListCap of them.
	CancelledDevices []string `json:"cancelledDevices"`
	// Truncated is true when any of the lists above was cut at ResultListCap.
	Truncated bool `json:"truncated"`
	// Reason says why a task failed or timed out, in words for a person.
	Reason string `json:"reason,omitempty"`
}

// ResultListCap bounds each device list in a Result; the devices endpoint has the full lists.
const ResultListCap = 1000

// Task is one submitted run of a script on a set of devices.
type Task struct {
	ID     string `json:"id"`
	Owner  string `json:"owner"`
	Status Status `json:"status"`
	// Version rises by one with every write to the task, including every device update that
	// changes its counts. It is the task's ETag and the condition of every write.
	Version     int64      `json:"version"`
	CreatedAt   time.Time  `json:"createdAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
	// ExpiresAt is when a finished task is forgotten; zero while the task is not terminal.
	ExpiresAt   time.Time `json:"expiresAt,omitzero"`
	Request     Request   `json:"request"`
	Counts      Counts    `json:"counts"`
	CurrentStep string    `json:"currentStep"`
	Result      *Result   `json:"result,omitempty"`
	// RelaunchOf is the id of the finished task this one relaunched (Relaunch), "" for a task
	// submitted afresh. It never changes.
	RelaunchOf string `json:"relaunchOf,omitempty"`
	// Lease is when the sweeper looks at an unfinished task unless the executor has renewed
	// it first (see engine.Sweep); zero where no sweeper runs (the embedded store).
	Lease time.Time `json:"lease,omitzero"`
	// Published is set once the notification of the task's terminal transition has been
	// published. Until then any executor message for the task publishes it again, so a
	// notification is never lost to a crash or an outage between the write and the publish.
	Published bool `json:"published,omitempty"`
}

// Caller is who makes a request: the owner whose tasks it submits and lists, and whether it
// is an administrator, who may read and cancel the tasks of every owner.
type Caller struct {
	Owner string
	Admin bool
}

// Sees reports whether c may read and cancel t. To anyone else t does not exist.
func (c Caller) Sees(t *Task) bool {
	return c.Admin || t.Owner == c.Owner
}

// Deadline is when the task times out, or zero before it has started.
func (t *Task) Deadline() time.Time {
	if t.StartedAt == nil || t.Request.TimeoutSeconds <= 0 {
		return time.Time{}
	}
	return t.StartedAt.Add(time.Duration(t.Request.TimeoutSeconds) * time.Second)
}

// EstimatedCompletion extrapolates when a running task will finish from how fast its devices
// have finished so far: the time from its start to its last update (the last device that
// moved), scaled by total devices over finished ones, and never later than its deadline. It is
// nil while no device has finished and whenever the task is not running. It depends on the
// stored task alone, so a task read twice at one version gives the same estimate.
func (t *Task) EstimatedCompletion() *time.Time {
	done := t.Counts.Done()
	if t.Status != StatusRunning || t.StartedAt == nil || done == 0 || t.Counts.Total == 0 {
		return nil
	}
	elapsed := max(t.UpdatedAt.Sub(*t.StartedAt), 0)
	at := t.StartedAt.Add(time.Duration(float64(elapsed) * float64(t.Counts.Total) / float64(done)))
	if deadline := t.Deadline(); !deadline.IsZero() && at.After(deadline) {
		at = deadline
	}
	at = at.UTC()
	return &at
}

// Expired reports whether a finished task is past its retention at time now. Stores filter
// expired tasks on read because deletion (DynamoDB TTL, the local sweeper) runs late.
func (t *Task) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// Unstarted returns the device of t that has no stored record: pending while the task is not
// finished, and UnstartedAtEnd, with a reason, once it is — a device that never started never
// will. Stores use it for every device they have no record of.
func (t *Task) Unstarted(deviceID string) *Device {
	d := &Device{TaskID: t.ID, ID: deviceID, Status: DevicePending}
	if t.Status.Terminal() {
		d.Status, d.Reason = UnstartedAtEnd, "never started: the task ended first"
	}
	return d
}

// IdempotencyRecord ties an owner's Idempotency-Key to the task it created and to a hash of the
// request body, so a replay can be told from a reuse with a different body.
type IdempotencyRecord struct {
	Owner       string    `json:"owner"`
	Key         string    `json:"key"`
	TaskID      string    `json:"taskId"`
	RequestHash string    `json:"requestHash"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// IdempotencyRetention is how long an Idempotency-Key is remembered, at least.
const IdempotencyRetention = 24 * time.Hour
