package task

import (
	"context"
	"time"
)

// Store keeps tasks, devices and idempotency records. It is the contract that the embedded
// store (localstore) and the DynamoDB store both satisfy; storetest holds the conformance suite
// that proves it. Every write that changes a status is conditional, so that concurrent,
// duplicated and reordered writers cannot corrupt a task.
//
// Reads treat a task past its ExpiresAt as not found, because physical deletion runs late.
type Store interface {
	// CreateTask stores a new pending task, and when idem is not nil its idempotency record, in
	// one atomic write. If the owner already used idem.Key and that record has not expired, it
	// stores nothing and returns the earlier task with created false when idem.RequestHash
	// matches, or an CodeIdempotencyMismatch error when it does not. CodeInProgress means a
	// concurrent request with the same key has not finished writing.
	CreateTask(ctx context.Context, t *Task, idem *IdempotencyRecord) (stored *Task, created bool, err error)

	// GetTask returns the task with id. It returns CodeNotFound when there is none or it has
	// expired. Owner checks belong to the caller.
	GetTask(ctx context.Context, id string) (*Task, error)

	// ListTasks returns q.Owner's tasks newest first, filtered by q.Status and q.RelaunchOf when
	// set. A listing by RelaunchOf reads only the relaunches of that task, however many tasks
	// the owner has: CreateTask indexes a task with a RelaunchOf under the task it relaunched,
	// in the same atomic write.
	ListTasks(ctx context.Context, q ListQuery) (*TaskPage, error)

	// Transition changes a task's status if the state machine allows tr (tr.Check) and the
	// task is still in tr.From at tr.Version; it sets StartedAt when the task starts and, when
	// it ends, CompletedAt, the result, the expiry and tr.Counts (which count the devices still
	// pending as UnstartedAtEnd), bumps the version, and returns the task as written. A step
	// (EventStep) keeps the status and StartedAt and writes the step alone. Otherwise it
	// returns CodeConflict (or CodeNotFound) and writes nothing.
	Transition(ctx context.Context, tr Transition) (*Task, error)

	// ApplyDeviceUpdates applies the updates for one task, each with Device.Apply: only a move
	// the device may make (or a longer output for an ended device) is written, atomically with
	// the task's counts and version; the rest are ignored, so a duplicated or reordered update
	// is never counted twice and never moves a device backwards. An update for a device that is not
	// part of the task is ignored too. It returns the task after the updates and how many were
	// applied. Updates to a task in a terminal state are ignored, except a longer output for a
	// device that has a record (Device.ApplyEnded), which is written without changing the task,
	// its version included.
	ApplyDeviceUpdates(ctx context.Context, taskID string, updates []DeviceUpdate) (*Task, int, error)

	// ListDevices returns a task's devices in the order of the request, filtered by q.Statuses
	// when set. Devices with no stored record are Task.Unstarted: pending, or cancelled once
	// the task has ended.
	ListDevices(ctx context.Context, taskID string, q DeviceQuery) (*DevicePage, error)

	// GetDevice returns one device of a task, CodeNotFound if the task has no such device.
	GetDevice(ctx context.Context, taskID, deviceID string) (*Device, error)

	// MarkPublished records that the notification of a terminal task has been published. It
	// does not change the version. CodeConflict if the task is not terminal, CodeNotFound if
	// there is no such task; marking a task twice is not an error.
	MarkPublished(ctx context.Context, id string) error

	// RecordDelivery stores one attempt to deliver a webhook event of d.TaskID, conditionally,
	// so that two copies of one event racing each other (a duplicated queue message, a
	// re-queued event) make each attempt once between them:
	//
	//   - A claim (d.Outcome DeliverySending) is stored when attempt d.Attempt of event
	//     d.EventID is not recorded, or is a claim made at or before d.At minus
	//     DeliveryClaimTimeout (abandoned); otherwise it returns CodeConflict.
	//   - Any other outcome is stored when the attempt is not recorded or is claimed, and
	//     replaces the claim; otherwise it returns CodeConflict.
	//
	// It returns CodeNotFound when the task does not exist or has expired, and writes nothing
	// whenever it returns an error. The record expires with its task.
	RecordDelivery(ctx context.Context, d Delivery) error

	// ListDeliveries returns the recorded attempts of a task's webhook events (of one event when
	// q.EventID is set), ordered by the event's time (EventAt), then its id, then the attempt,
	// a page at a time. It does not check that the task exists; the caller reads it first.
	ListDeliveries(ctx context.Context, taskID string, q DeliveryQuery) (*DeliveryPage, error)

	// DeleteExpired removes the tasks (with their devices and delivery records) that expired
	// before now and the idempotency records past their own expiry, and returns how many tasks
	// it removed.
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
}

// ListQuery selects a page of an owner's tasks.
type ListQuery struct {
	Owner  string
	Status Status
	// RelaunchOf, when set, selects only the tasks relaunched from that task (Task.RelaunchOf).
	RelaunchOf string
	Limit      int
	Cursor     string
}

// TaskPage is one page of tasks; Next is the opaque cursor of the next page, empty on the last.
type TaskPage struct {
	Tasks []*Task
	Next  string
}

// DeviceQuery selects a page of a task's devices.
type DeviceQuery struct {
	Statuses []DeviceStatus
	Limit    int
	Cursor   string
}

// DevicePage is one page of devices; Next is the opaque cursor of the next page, empty on the
// last.
type DevicePage struct {
	Devices []*Device
	Next    string
}

// Page size bounds for listings.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// PageSize turns a requested limit into one within bounds.
func PageSize(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageSize
	case limit > MaxPageSize:
		return MaxPageSize
	}
	return limit
}
