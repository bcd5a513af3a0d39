package engine

import (
	"context"
	"fmt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Submission is a request to run a task as the caller sent it, with what the HTTP layer knows
// of it. Submit validates it (task.Rules.Validate).
type Submission struct {
	Owner string
	Draft task.Draft
	// IdempotencyKey is the caller's Idempotency-Key header, empty when none was sent.
	IdempotencyKey string
	// RequestHash identifies the request body, so a replay with another body is refused.
	RequestHash string
	// Links is the base URL the request arrived at: the links in the task's webhook payloads
	// start with it.
	Links string
}

// Submit validates s, asks Admission for room, stores a pending task (with its idempotency
// record, atomically) and queues its dispatch. created is false when an earlier submit with the
// same Idempotency-Key and body is being replayed; that task is returned and nothing new is
// stored or queued. A submit that Admission refuses stores nothing: the caller retries later,
// with the same Idempotency-Key.
//
// A task that was stored but could not be queued is failed at once rather than left pending
// forever, and the error is returned.
func (e *Engine) Submit(ctx context.Context, s Submission) (t *task.Task, created bool, err error) {
	return e.submit(ctx, s, "")
}

// submit is Submit of a task that relaunches task relaunchOf, or of a fresh one when it is "".
func (e *Engine) submit(ctx context.Context, s Submission, relaunchOf string) (t *task.Task, created bool, err error) {
	draft, err := e.resolve(ctx, s.Draft)
	if err != nil {
		return nil, false, err
	}
	req, err := e.cfg.Rules.Validate(draft)
	if err != nil {
		return nil, false, err
	}
	if req.Notify != nil {
		req.Notify.Links = s.Links
	}
	if e.cfg.Admission != nil {
		release, err := e.cfg.Admission.Admit(len(req.DeviceIDs))
		if err != nil {
			return nil, false, err
		}
		defer release()
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
		RelaunchOf:  relaunchOf,
	}
	if e.cfg.Leases != nil {
		t.Lease = now.Add(e.cfg.DispatchGrace)
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
			return nil, false, task.Errorf(task.CodeIdempotencyMismatch, "the Idempotency-Key was used for another task")
		}
		return stored, false, nil
	}
	e.log.InfoContext(ctx, "task submitted", "task_id", stored.ID, "owner", stored.Owner,
		"devices", stored.Counts.Total, "script", stored.Request.ScriptURL, "relaunch_of", stored.RelaunchOf)
	e.notify(stored)
	// A stored task counts as submitted even when it cannot be queued: it is then failed, and
	// counted as finished like every other stored task.
	e.cfg.Metrics.TaskSubmitted(ctx)
	if err := e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: ActionDispatch, TaskID: stored.ID, Lease: e.lease(stored)}, 0); err != nil {
		e.log.ErrorContext(ctx, "queue dispatch failed", "task_id", stored.ID, "err", err)
		if failed, ferr := e.fail(ctx, stored, "the task could not be queued"); ferr == nil {
			e.notify(failed)
		}
		return nil, false, fmt.Errorf("engine: queue task %s: %w", stored.ID, task.Errorf(task.CodeUnavailable, "the task could not be queued; try again"))
	}
	return stored, true, nil
}

// resolve turns the targets of a draft into its device ids, once, at submit: the task keeps
// that snapshot, and the targets. A draft without targets is returned as it is.
func (e *Engine) resolve(ctx context.Context, d task.Draft) (task.Draft, error) {
	if err := task.CheckTargets(d); err != nil || d.Targets == nil {
		return d, err
	}
	if e.cfg.Inventory == nil {
		return d, &task.Error{Code: task.CodeInvalid, Message: "targets cannot be resolved here",
			Fields: []task.FieldError{{Pointer: "/targets", Detail: "this server has no inventory of devices and their tags " +
				"(fleetrun serve --inventory FILE): name the devices with deviceIds instead"}}}
	}
	ids, err := e.cfg.Inventory.Resolve(ctx, task.Resolution{Targets: d.Targets, IncludeOffline: d.IncludeOffline,
		Limit: task.MaxDevices + 1})
	if err != nil {
		return d, fmt.Errorf("engine: resolve targets: %w", err)
	}
	if err := task.CheckResolved(d.Targets, ids); err != nil {
		return d, err
	}
	d.DeviceIDs = ids
	return d, nil
}

// Inventory returns a page of the home's devices that match q's targets. Without an inventory
// there is nothing to list: CodeNotFound.
func (e *Engine) Inventory(ctx context.Context, q task.InventoryQuery) (*task.InventoryPage, error) {
	if e.cfg.Inventory == nil {
		return nil, task.Errorf(task.CodeNotFound, "this server has no inventory of devices (fleetrun serve --inventory FILE)")
	}
	q.Limit = task.PageSize(q.Limit)
	return e.cfg.Inventory.List(ctx, q)
}

// Get returns task id as caller may see it. Another owner's task is not found, unless caller
// is an administrator.
func (e *Engine) Get(ctx context.Context, caller task.Caller, id string) (*task.Task, error) {
	t, err := e.cfg.Store.GetTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if !caller.Sees(t) {
		return nil, task.Errorf(task.CodeNotFound, "no task %s", id)
	}
	return t, nil
}

// List returns a page of owner's tasks, newest first. The query's parameters are the caller's
// to check (task.QueryParser); a cursor the store cannot read is a CodeInvalidQuery error.
func (e *Engine) List(ctx context.Context, q task.ListQuery) (*task.TaskPage, error) {
	q.Limit = task.PageSize(q.Limit)
	return e.cfg.Store.ListTasks(ctx, q)
}

// Devices returns a page of the devices of task id, which caller must see, as List does for
// tasks.
func (e *Engine) Devices(ctx context.Context, caller task.Caller, id string, q task.DeviceQuery) (*task.DevicePage, error) {
	if _, err := e.Get(ctx, caller, id); err != nil {
		return nil, err
	}
	q.Limit = task.PageSize(q.Limit)
	return e.cfg.Store.ListDevices(ctx, id, q)
}

// Device returns one device of task id, which caller must see.
func (e *Engine) Device(ctx context.Context, caller task.Caller, id, deviceID string) (*task.Device, error) {
	if _, err := e.Get(ctx, caller, id); err != nil {
		return nil, err
	}
	return e.cfg.Store.GetDevice(ctx, id, deviceID)
}

// Cancel cancels task id, which caller must see (its owner, or an administrator), and returns
// it as it now is. Cancel is idempotent:
//
//   - pending becomes cancelled at once; no device was started, and a dispatch that arrives
//     later finds the task cancelled and does nothing.
//   - running becomes cancelling, and a cancel message asks the runner to stop every device
//     still working. The task becomes cancelled only when every device has reported a terminal
//     state, so "cancelled" means the devices really stopped; devices that finished before the
//     cancel reached them keep their own outcome.
//   - cancelling and cancelled are returned as they are (the cancel message is re-sent for
//     cancelling, in case the first was lost).
//   - completed, failed and timed_out cannot be cancelled: an CodeConflict error carries the
//     current status.
func (e *Engine) Cancel(ctx context.Context, caller task.Caller, id string) (*task.Task, error) {
	for attempt := 1; ; attempt++ {
		t, err := e.Get(ctx, caller, id)
		if err != nil {
			return nil, err
		}
		tr, err := task.Cancel(t, e.cfg.Now().UTC())
		switch {
		case t.Status == task.StatusPending:
			t, err = e.cancelPending(ctx, t)
		case err != nil:
			return nil, &task.Error{Code: task.CodeConflict, Status: t.Status,
				Message: fmt.Sprintf("the task is %s and can no longer be cancelled", t.Status)}
		case tr.To != tr.From:
			tr.Step = "cancelling devices"
			t, err = e.cfg.Store.Transition(ctx, tr)
			if err == nil {
				e.log.InfoContext(ctx, "task cancel", "task_id", t.ID, "status", t.Status)
				e.notify(t)
			}
		}
		if err == nil && t.Status != task.StatusCancelling && !t.Status.Terminal() {
			// A dispatch won the race with the cancel of a pending task.
			err = &task.Error{Code: task.CodeConflict, Status: t.Status, Message: fmt.Sprintf("task %s became %s during the cancel", t.ID, t.Status)}
		}
		if task.IsCode(err, task.CodeConflict) && attempt < maxWriteAttempts {
			continue // the task changed under us; decide again on its new state
		}
		if err != nil {
			return nil, err
		}
		if t.Status == task.StatusCancelling {
			if err := e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: ActionCancel, TaskID: t.ID, Lease: e.lease(t)}, 0); err != nil {
				return nil, fmt.Errorf("engine: queue cancel of %s: %w", t.ID, err)
			}
		}
		return t, nil
	}
}

// cancelPending ends a pending task cancelled, through end like every other ending. None of its
// devices ever started. It returns the task as it is when it is no longer pending (a dispatch
// won the race); the cancel stands when only its notification could not go out.
func (e *Engine) cancelPending(ctx context.Context, t *task.Task) (*task.Task, error) {
	done, err := e.end(ctx, t, "cancelled before start", func(t *task.Task) (task.Event, string, bool) {
		return task.EventCancel, "cancelled before any device started", t.Status == task.StatusPending
	})
	if err != nil && done != nil && done.Status.Terminal() {
		e.log.ErrorContext(ctx, "the cancel's notification could not be published or queued", "task_id", t.ID, "err", err)
		return done, nil
	}
	return done, err
}
