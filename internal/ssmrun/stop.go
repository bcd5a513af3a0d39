package ssmrun

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Devices reads a task and its devices as stored; a task.Store satisfies it. The runner uses
// it to leave devices that callers cancelled one by one out of the batches it sends.
type Devices interface {
	GetTask(ctx context.Context, id string) (*task.Task, error)
	ListDevices(ctx context.Context, taskID string, q task.DeviceQuery) (*task.DevicePage, error)
}

// StopDevices cancels the invocations of the named devices of t: one CancelCommand per command
// that holds any of them, naming exactly those instances, so the rest of each command runs on.
// SSM then reports each stopped invocation Cancelled, and Poll reports the device cancelled
// (or its own ending, if it finished first). A device's command is its batch's, or, for a
// batch split to isolate unknown ids, whichever part holds it. A device whose batch has not
// been sent needs nothing: Start leaves out the devices callers cancelled. A command SSM no
// longer knows (expired from its history) has nothing left to stop. StopDevices is idempotent.
func (r *Runner) StopDevices(ctx context.Context, t *task.Task, deviceIDs []string) error {
	recorded, err := r.cfg.CommandLog.Commands(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("ssmrun: commands of %s: %w", t.ID, err)
	}
	commands := map[int][]string{} // by batch: the whole batch's command, or its parts'
	for _, slot := range slices.Sorted(maps.Keys(recorded)) {
		if id := recorded[slot]; !marker(id) {
			n, _ := slotBatch(slot)
			commands[n] = append(commands[n], id)
		}
	}
	position := make(map[string]int, len(t.Request.DeviceIDs))
	for i, id := range t.Request.DeviceIDs {
		position[id] = i
	}
	byCommand := map[string][]string{}
	for _, id := range deviceIDs {
		i, ok := position[id]
		if !ok {
			continue
		}
		for _, command := range commands[i/BatchSize] {
			if !slices.Contains(byCommand[command], id) {
				byCommand[command] = append(byCommand[command], id)
			}
		}
	}
	for _, command := range slices.Sorted(maps.Keys(byCommand)) {
		if err := r.cancelInstances(ctx, t.ID, command, byCommand[command]); err != nil {
			return err
		}
	}
	return nil
}

// cancelInstances cancels the invocations of instances on command. When the command is one
// part of a split batch, an instance may be another part's: SSM refuses the call with
// InvalidInstanceId, and each instance is then cancelled alone, the others' refusals ignored.
func (r *Runner) cancelInstances(ctx context.Context, taskID, command string, instances []string) error {
	for ids := range slices.Chunk(instances, BatchSize) {
		err := r.cancel(ctx, taskID, command, ids)
		if unknownInstance(err) && len(ids) > 1 {
			for _, id := range ids {
				if err := r.cancel(ctx, taskID, command, []string{id}); err != nil && !unknownInstance(err) {
					return err
				}
			}
			continue
		}
		if err != nil && !unknownInstance(err) {
			return err
		}
	}
	return nil
}

// cancel sends one CancelCommand for ids on command; a command SSM no longer knows is no error.
func (r *Runner) cancel(ctx context.Context, taskID, command string, ids []string) error {
	_, err := r.cfg.API.CancelCommand(ctx, &ssm.CancelCommandInput{CommandId: aws.String(command), InstanceIds: ids})
	var expired *types.InvalidCommandId
	if errors.As(err, &expired) {
		return nil // expired from SSM's history: nothing left to stop
	}
	if err != nil {
		if unknownInstance(err) {
			return err
		}
		return fmt.Errorf("ssmrun: cancel %v of %s command %s: %w", ids, taskID, command, err)
	}
	r.log.InfoContext(ctx, "devices cancelled", "task_id", taskID, "command_id", command, "devices", ids)
	return nil
}

// cancelledDevices returns the devices of t that are cancelled in the store, when the runner
// can read it and t has any; nil otherwise.
func (r *Runner) cancelledDevices(ctx context.Context, t *task.Task) (map[string]bool, error) {
	if r.cfg.Devices == nil || t.Counts.Cancelled == 0 {
		return nil, nil
	}
	out := map[string]bool{}
	q := task.DeviceQuery{Statuses: []task.DeviceStatus{task.DeviceCancelled}, Limit: task.MaxPageSize}
	for {
		page, err := r.cfg.Devices.ListDevices(ctx, t.ID, q)
		if err != nil {
			return nil, fmt.Errorf("ssmrun: cancelled devices of %s: %w", t.ID, err)
		}
		for _, d := range page.Devices {
			out[d.ID] = true
		}
		if q.Cursor = page.Next; q.Cursor == "" {
			return out, nil
		}
	}
}

// stopLateCancels closes the race between a dispatch and a caller cancelling a device of a
// batch the dispatch was sending: the cancel writes the device before it reads the command
// log, and the dispatch records the command before it reads the devices again here, so one of
// the two always sees the other and the device's invocation is cancelled. skipped are the
// devices the dispatch left out already.
func (r *Runner) stopLateCancels(ctx context.Context, t *task.Task, skipped map[string]bool) error {
	if r.cfg.Devices == nil {
		return nil
	}
	fresh, err := r.cfg.Devices.GetTask(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("ssmrun: read %s after dispatch: %w", t.ID, err)
	}
	if fresh.Counts.Cancelled == t.Counts.Cancelled {
		return nil
	}
	now, err := r.cancelledDevices(ctx, fresh)
	if err != nil {
		return err
	}
	var late []string
	for _, id := range t.Request.DeviceIDs {
		if now[id] && !skipped[id] {
			late = append(late, id)
		}
	}
	if len(late) == 0 {
		return nil
	}
	return r.StopDevices(ctx, fresh, late)
}
