package engine

import (
	"context"
	"fmt"

	"github.com/fleetrun/fleetrun/internal/task"
)

// CancelDevice cancels one device of task id, which caller must see (its owner, or an
// administrator), while the task goes on with its other devices, and returns the task and the
// device as they now are. It is idempotent:
//
//   - A pending device is cancelled at once (task.CancelDevice, a conditional write like every
//     device update) and never starts: the runner is told to leave it out, and on AWS a batch
//     already sent with it is cancelled for that instance.
//   - A running device is marked as asked to stop, and a stop-devices message asks the runner
//     to stop it: locally SIGTERM, then SIGKILL after the grace period, to its process group;
//     on AWS CancelCommand naming that one instance. It stays running until the runner reports
//     it cancelled, or its own ending if it finished first.
//   - Cancelling a device again (running and marked, or cancelled) changes nothing, and sends
//     the stop again in case the first was lost.
//   - A device that ended otherwise, or any device of an ended task, cannot be cancelled: a
//     CodeConflict error carries the current status.
//
// A task whose remaining devices are all cancelled this way ends like any other: completed,
// with the cancelled devices listed in its result.
func (e *Engine) CancelDevice(ctx context.Context, caller task.Caller, id, deviceID string) (*task.Task, *task.Device, error) {
	for attempt := 1; ; attempt++ {
		t, err := e.Get(ctx, caller, id)
		if err != nil {
			return nil, nil, err
		}
		d, err := e.cfg.Store.GetDevice(ctx, id, deviceID)
		if err != nil {
			return nil, nil, err
		}
		now := e.cfg.Now().UTC()
		u, err := task.CancelDevice(t, d, now)
		if err != nil {
			return nil, nil, err
		}
		if probe := *d; probe.Apply(u, now) == task.Ignored {
			// Asked before: nothing to write, but the stop may not have reached the runner.
			return t, d, e.sendStop(ctx, t.ID, deviceID)
		}
		t, applied, err := e.cfg.Store.ApplyDeviceUpdates(ctx, id, []task.DeviceUpdate{u})
		if err != nil {
			return nil, nil, fmt.Errorf("engine: cancel device %s of %s: %w", deviceID, id, err)
		}
		if applied == 0 {
			// The device or the task moved since it was read: decide again on what it is now.
			if attempt < maxWriteAttempts {
				continue
			}
			return nil, nil, &task.Error{Code: task.CodeConflict, Status: t.Status, DeviceStatus: d.Status,
				Message: fmt.Sprintf("device %s of task %s keeps changing; try again", deviceID, id)}
		}
		e.log.InfoContext(ctx, "device cancel", "task_id", id, "device_id", deviceID, "from", d.Status, "to", u.Status)
		e.notify(t)
		if err := e.sendStop(ctx, id, deviceID); err != nil {
			return nil, nil, err
		}
		if t, err = e.finishIfDone(ctx, t); err != nil && (t == nil || !t.Status.Terminal()) {
			return nil, nil, err
		}
		if d, err = e.cfg.Store.GetDevice(ctx, id, deviceID); err != nil {
			return nil, nil, err
		}
		return t, d, nil
	}
}

// sendStop queues the message that asks the runner to stop one device.
func (e *Engine) sendStop(ctx context.Context, taskID, deviceID string) error {
	m := Message{Version: MessageVersion, Action: ActionStopDevices, TaskID: taskID, DeviceIDs: []string{deviceID}}
	if err := e.cfg.Queue.Send(ctx, m, 0); err != nil {
		return fmt.Errorf("engine: queue the stop of device %s of %s: %w: %w", deviceID, taskID,
			task.Errorf(task.CodeUnavailable, "the device's stop could not be queued; repeat the request"), err)
	}
	return nil
}

// stopDevices asks the runner to stop the devices a stop-devices message names. A device that
// has ended meanwhile is the runner's to ignore.
func (e *Engine) stopDevices(ctx context.Context, t *task.Task, deviceIDs []string) error {
	if len(deviceIDs) == 0 {
		return fmt.Errorf("engine: stop-devices message for %s names no device: %w", t.ID, ErrMalformed)
	}
	if err := e.cfg.Runner.StopDevices(ctx, t, deviceIDs); err != nil {
		return fmt.Errorf("engine: stop devices %v of %s: %w", deviceIDs, t.ID, err)
	}
	return nil
}
