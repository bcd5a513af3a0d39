package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Submission is a validated-or-not request to run a task, with what the HTTP layer knows of it.
type Submission struct {
	Owner   string
	Request task.Request
	// IdempotencyKey is the caller's Idempotency-Key header, empty when none was sent.
	IdempotencyKey string
	// RequestHash identifies the request body, so a replay with another body is refused.
	RequestHash string
}

// Submit validates s, stores a pending task (with its idempotency record, atomically) and
// queues its dispatch. created is false when an earlier submit with the same Idempotency-Key
// and body is being replayed; that task is returned and nothing new is stored or queued.
//
// A task that was stored but could not be queued is failed at once rather than left pending
// forever, and the error is returned.
func (e *Engine) Submit(ctx context.Context, s Submission) (t *task.Task, created bool, err error) {
	req := s.Request
	if err := e.cfg.Rules.Validate(&req); err != nil {
		return nil, false, err
	}
	now := e.cfg.Now().UTC()
	t = &task.Task{
		ID:          e.cfg.NewID(),
		Owner:       s.Owner,
		Status:      task.StatusPending,
		Version:     1,
		CreatedAt:   now,
		UpdatedAt:   now,
		Request:     req,
		Counts:      task.Counts{Total: len(req.DeviceIDs), Pending: len(req.DeviceIDs)},
		CurrentStep: "queued",
	}
	var idem *task.IdempotencyRecord
	if s.IdempotencyKey != "" {
		idem = &task.IdempotencyRecord{
			Owner:       s.Owner,
			Key:         s.IdempotencyKey,
			TaskID:      t.ID,
			RequestHash: s.RequestHash,
			ExpiresAt:   now.Add(max(task.IdempotencyRetention, e.cfg.Retention)),
		}
	}
	stored, created, err := e.cfg.Store.CreateTask(ctx, t, idem)
	if err != nil {
		return nil, false, err
	}
	if !created {
		if stored.Owner != s.Owner {
			return nil, false, task.Errorf(task.ErrIdempotencyMismatch, "the Idempotency-Key was used for another task")
		}
		return stored, false, nil
	}
	e.log.InfoContext(ctx, "task submitted", "task_id", stored.ID, "owner", stored.Owner,
		"devices", stored.Counts.Total, "script", stored.Request.ScriptURL)
	e.notify(stored)
	// A stored task counts as submitted even when it cannot be queued: it is then failed, and
	// counted as finished like every other stored task.
	e.cfg.Metrics.TaskSubmitted(ctx)
	if err := e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: ActionDispatch, TaskID: stored.ID}, 0); err != nil {
		e.log.ErrorContext(ctx, "queue dispatch failed", "task_id", stored.ID, "err", err)
		if failed, ferr := e.fail(ctx, stored, "the task could not be queued"); ferr == nil {
			e.notify(failed)
		}
		return nil, false, fmt.Errorf("engine: queue task %s: %w", stored.ID, task.Errorf(task.ErrUnavailable, "the task could not be queued; try again"))
	}
	return stored, true, nil
}

// Get returns owner's task id. Another owner's task is not found.
func (e *Engine) Get(ctx context.Context, owner, id string) (*task.Task, error) {
	t, err := e.cfg.Store.GetTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Owner != owner {
		return nil, task.Errorf(task.ErrNotFound, "no task %s", id)
	}
	return t, nil
}

// List returns a page of owner's tasks, newest first.
func (e *Engine) List(ctx context.Context, q task.ListQuery) (*task.TaskPage, error) {
	if q.Status != "" && !q.Status.Valid() {
		return nil, &task.Error{Code: task.ErrInvalid, Message: "unknown status",
			Fields: []task.FieldError{{Pointer: "/status", Detail: fmt.Sprintf("%q is not a task status", q.Status)}}}
	}
	q.Limit = task.PageSize(q.Limit)
	return e.cfg.Store.ListTasks(ctx, q)
}

// Devices returns a page of the devices of owner's task id.
func (e *Engine) Devices(ctx context.Context, owner, id string, q task.DeviceQuery) (*task.DevicePage, error) {
	for _, s := range q.Statuses {
		if !s.Valid() {
			return nil, &task.Error{Code: task.ErrInvalid, Message: "unknown device status",
				Fields: []task.FieldError{{Pointer: "/status", Detail: fmt.Sprintf("%q is not a device status", s)}}}
		}
	}
	if _, err := e.Get(ctx, owner, id); err != nil {
		return nil, err
	}
	q.Limit = task.PageSize(q.Limit)
	return e.cfg.Store.ListDevices(ctx, id, q)
}

// Device returns one device of owner's task id.
func (e *Engine) Device(ctx context.Context, owner, id, deviceID string) (*task.Device, error) {
	if _, err := e.Get(ctx, owner, id); err != nil {
		return nil, err
	}
	return e.cfg.Store.GetDevice(ctx, id, deviceID)
}

// Cancel cancels owner's task id and returns it as it now is. Cancel is idempotent:
//
//   - pending becomes cancelled at once; no device was started, and a dispatch that arrives
//     later finds the task cancelled and does nothing.
//   - running becomes cancelling, and a cancel message asks the runner to stop every device
//     still working. The task becomes cancelled only when every device has reported a terminal
//     state, so "cancelled" means the devices really stopped; devices that finished before the
//     cancel reached them keep their own outcome.
//   - cancelling and cancelled are returned as they are (the cancel message is re-sent for
//     cancelling, in case the first was lost).
//   - completed, failed and timed_out cannot be cancelled: an ErrConflict error carries the
//     current status.
func (e *Engine) Cancel(ctx context.Context, owner, id string) (*task.Task, error) {
	for attempt := 0; ; attempt++ {
		t, err := e.Get(ctx, owner, id)
		if err != nil {
			return nil, err
		}
		next, err := t.Status.Next(task.EventCancel)
		if err != nil {
			return nil, &task.Error{Code: task.ErrConflict, Status: t.Status,
				Message: fmt.Sprintf("the task is %s and can no longer be cancelled", t.Status)}
		}
		if next != t.Status {
			tr := task.Transition{TaskID: t.ID, From: t.Status, Version: t.Version, To: next,
				At: e.cfg.Now().UTC(), Step: "cancelling devices"}
			if next.Terminal() {
				// Only a pending task is cancelled at once, so none of its devices ever started.
				tr.Step, tr.ExpiresAt = "cancelled before start", e.expiry(next)
				tr.Result = &task.Result{SucceededDevices: []string{}, FailedDevices: []string{},
					CancelledDevices: capped(t.Request.DeviceIDs), Truncated: len(t.Request.DeviceIDs) > task.ResultListCap,
					Reason: "cancelled before any device started"}
			}
			t2, err := e.cfg.Store.Transition(ctx, tr)
			if task.IsCode(err, task.ErrConflict) && attempt < 10 {
				continue // the task changed under us; decide again on its new state
			}
			if err != nil {
				return nil, err
			}
			t = t2
			e.log.InfoContext(ctx, "task cancel", "task_id", t.ID, "status", t.Status)
			e.notify(t)
			if t.Status.Terminal() {
				e.finished(ctx, t)
				if err := e.publish(ctx, t); err != nil {
					// The cancel stands; only its notification is late.
					e.log.ErrorContext(ctx, "the cancel's notification could not be published or queued", "task_id", t.ID, "err", err)
				}
			}
		}
		if t.Status == task.StatusCancelling {
			if err := e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: ActionCancel, TaskID: t.ID}, 0); err != nil {
				return nil, fmt.Errorf("engine: queue cancel of %s: %w", t.ID, err)
			}
		}
		return t, nil
	}
}

func (e *Engine) expiry(s task.Status) (at time.Time) {
	if s.Terminal() {
		return e.cfg.Now().UTC().Add(e.cfg.Retention)
	}
	return at
}

func capped(ids []string) []string {
	if len(ids) > task.ResultListCap {
		ids = ids[:task.ResultListCap]
	}
	return append([]string(nil), ids...)
}
