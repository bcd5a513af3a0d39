package engine

import (
	"context"
	"fmt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Relaunch is a request to run a finished task's script again on some of its devices, as the
// HTTP layer knows it.
type Relaunch struct {
	// Caller must see the task; the relaunch is theirs.
	Caller task.Caller
	TaskID string
	Draft  task.RelaunchDraft
	// IdempotencyKey and RequestHash work as for a Submission: the same key and body return the
	// same relaunch. RequestHash must tell a relaunch from a submit and one task's relaunch
	// from another's.
	IdempotencyKey string
	RequestHash    string
	// Links is the base URL the request arrived at, as for a Submission: the relaunch keeps the
	// original's webhook subscription, with the links of its payloads based here.
	Links string
}

// Relaunch creates a new task, owned by r.Caller, that runs finished task r.TaskID again on the devices
// r.Draft selects — every device that did not succeed (task.RelaunchFailed), every device, or
// a list of them — with the original's script and settings, except those r.Draft overrides. It
// is submitted like any task (validated, stored pending with its idempotency record, queued)
// and records the original in its RelaunchOf. created is false on an Idempotency-Key replay.
//
// A task that has not finished cannot be relaunched (CodeConflict, with its status); a
// RelaunchFailed relaunch of a task whose every device succeeded is CodeInvalid, and so are
// devices that are not the task's.
func (e *Engine) Relaunch(ctx context.Context, r Relaunch) (*task.Task, bool, error) {
	orig, err := e.Get(ctx, r.Caller, r.TaskID)
	if err != nil {
		return nil, false, err
	}
	if err := task.CheckRelaunch(orig, r.Draft); err != nil {
		return nil, false, err
	}
	var devices []string
	switch r.Draft.Which {
	case task.RelaunchAll:
		devices = orig.Request.DeviceIDs
	case task.RelaunchFailed:
		if devices, err = e.deviceIDs(ctx, orig.ID, task.RelaunchStatuses()); err != nil {
			return nil, false, err
		}
		if len(devices) == 0 {
			return nil, false, task.NothingToRelaunch(orig)
		}
	default:
		devices = r.Draft.DeviceIDs
	}
	return e.submit(ctx, Submission{Owner: r.Caller.Owner, Draft: r.Draft.Draft(orig, devices),
		IdempotencyKey: r.IdempotencyKey, RequestHash: r.RequestHash, Links: r.Links}, orig.ID)
}

// deviceIDs lists, in request order, the devices of task id in one of statuses.
func (e *Engine) deviceIDs(ctx context.Context, id string, statuses []task.DeviceStatus) ([]string, error) {
	var ids []string
	q := task.DeviceQuery{Statuses: statuses, Limit: task.MaxPageSize}
	for {
		page, err := e.cfg.Store.ListDevices(ctx, id, q)
		if err != nil {
			return nil, fmt.Errorf("engine: list devices of %s: %w", id, err)
		}
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
		}
		if q.Cursor = page.Next; q.Cursor == "" {
			return ids, nil
		}
	}
}
