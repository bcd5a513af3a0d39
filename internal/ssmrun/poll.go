package ssmrun

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Poll reports the devices of every batch sent for t, one update per invocation SSM lists.
// Invocations SSM still holds back (Pending, Delayed) are not reported: the device has not
// started. Devices of a refused batch, and the ids SSM did not know in a split batch, are
// reported undeliverable; devices of a batch (or of the part of a split batch) never sent are
// reported cancelled once t is cancelling, since no dispatch will send them.
func (r *Runner) Poll(ctx context.Context, t *task.Task) ([]task.DeviceUpdate, error) {
	recorded, err := r.cfg.CommandLog.Commands(ctx, t.ID)
	if err != nil {
		return nil, fmt.Errorf("ssmrun: commands of %s: %w", t.ID, err)
	}
	parts := map[int][]string{}
	for _, slot := range slices.Sorted(maps.Keys(recorded)) {
		if n, seq := slotBatch(slot); seq > 0 {
			parts[n] = append(parts[n], recorded[slot])
		}
	}
	now := r.cfg.Now().UTC()
	var updates []task.DeviceUpdate
	undeliverable := func(ids []string, reason string) {
		for _, d := range ids {
			updates = append(updates, task.DeviceUpdate{DeviceID: d, Status: task.DeviceUndeliverable, At: now, Reason: reason})
		}
	}
	for n, ids := range Batches(t.Request.DeviceIDs) {
		id, ok := recorded[n]
		if msg, refused := refusal(id); ok && refused {
			undeliverable(ids, fmt.Sprintf("SSM refused the command for this device's batch of %d: %s", len(ids), msg))
			continue
		}
		commands := parts[n]
		if unknown, split := splitIDs(id); ok && split {
			undeliverable(unknown, unknownNodeReason)
		} else if ok {
			commands = append(commands, id)
		}
		seen := map[string]bool{}
		for _, c := range commands {
			got, err := r.poll(ctx, t, c, now, seen)
			if err != nil {
				return nil, err
			}
			updates = append(updates, got...)
		}
		if !ok && t.Status == task.StatusCancelling {
			// The batch, or the rest of it while it was being split, was never sent.
			for _, d := range ids {
				if !seen[d] {
					updates = append(updates, task.DeviceUpdate{DeviceID: d, Status: task.DeviceCancelled, At: now,
						Reason: "never started: the task was cancelled before this device's batch was sent"})
				}
			}
		}
	}
	return updates, nil
}

// poll lists one command's invocations, with their output, page by page, and adds the
// instance id of every invocation listed to seen.
func (r *Runner) poll(ctx context.Context, t *task.Task, commandID string, now time.Time, seen map[string]bool) ([]task.DeviceUpdate, error) {
	var updates []task.DeviceUpdate
	p := ssm.NewListCommandInvocationsPaginator(r.cfg.API, &ssm.ListCommandInvocationsInput{
		CommandId: aws.String(commandID), Details: true, MaxResults: aws.Int32(50)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ssmrun: list invocations of %s command %s: %w", t.ID, commandID, err)
		}
		for _, inv := range page.CommandInvocations {
			seen[aws.ToString(inv.InstanceId)] = true
			if u, ok := r.update(inv, now); ok {
				updates = append(updates, u)
			}
		}
	}
	return updates, nil
}

// Cancel asks SSM to stop every command of t that has not finished. It cancels whole commands
// (CancelCommand without instance ids): every device of t is to stop, and one call per batch
// is the fewest. Cancel is idempotent: finished and already cancelling commands are skipped,
// and cancelling twice is harmless. The devices report cancelled through Poll once SSM has
// stopped them; devices that finished first keep their own outcome.
func (r *Runner) Cancel(ctx context.Context, t *task.Task) error {
	recorded, err := r.cfg.CommandLog.Commands(ctx, t.ID)
	if err != nil {
		return fmt.Errorf("ssmrun: commands of %s: %w", t.ID, err)
	}
	for _, n := range slices.Sorted(maps.Keys(recorded)) {
		id := recorded[n]
		if marker(id) {
			continue
		}
		out, err := r.cfg.API.ListCommands(ctx, &ssm.ListCommandsInput{CommandId: aws.String(id)})
		var unknown *types.InvalidCommandId
		if errors.As(err, &unknown) {
			continue // expired from SSM's history: nothing left to stop
		}
		if err != nil {
			return fmt.Errorf("ssmrun: status of %s command %s: %w", t.ID, id, err)
		}
		if len(out.Commands) == 0 || !open(out.Commands[0].Status) {
			continue
		}
		_, err = r.cfg.API.CancelCommand(ctx, &ssm.CancelCommandInput{CommandId: aws.String(id)})
		if errors.As(err, &unknown) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ssmrun: cancel %s command %s: %w", t.ID, id, err)
		}
		r.log.InfoContext(ctx, "command cancelled", "task_id", t.ID, "batch", n, "command_id", id)
	}
	return nil
}

// open reports whether a command may still have invocations to stop.
func open(s types.CommandStatus) bool {
	switch s {
	case types.CommandStatusPending, types.CommandStatusInProgress:
		return true
	}
	return false
}

// Invocation reads one device's invocation with GetCommandInvocation, which returns up to
// 24,000 characters of stdout and 8,000 of stderr, and returns the task it belongs to and the
// update it means. It is for handling SSM's per-invocation EventBridge events.
func (r *Runner) Invocation(ctx context.Context, commandID, instanceID string) (string, task.DeviceUpdate, error) {
	taskID, err := r.cfg.CommandLog.TaskForCommand(ctx, commandID)
	if err != nil {
		return "", task.DeviceUpdate{}, fmt.Errorf("ssmrun: task of command %s: %w", commandID, err)
	}
	in := &ssm.GetCommandInvocationInput{CommandId: aws.String(commandID), InstanceId: aws.String(instanceID)}
	if r.cfg.PluginName != "" {
		in.PluginName = aws.String(r.cfg.PluginName)
	}
	out, err := r.cfg.API.GetCommandInvocation(ctx, in)
	if err != nil {
		return "", task.DeviceUpdate{}, fmt.Errorf("ssmrun: invocation of command %s on %s: %w", commandID, instanceID, err)
	}
	details := aws.ToString(out.StatusDetails)
	u := task.DeviceUpdate{DeviceID: instanceID, Status: StatusFor(string(out.Status), details),
		At: r.cfg.Now().UTC(), Ref: commandID}
	if u.Status.Terminal() {
		u.Stdout, u.StdoutTruncated = capped(aws.ToString(out.StandardOutputContent), task.StdoutInlineLimit)
		u.Stderr, u.StderrTruncated = capped(aws.ToString(out.StandardErrorContent), task.StderrInlineLimit)
		u.ExitCode = exitCode(u.Status, out.ResponseCode)
		u.Reason = reason(u.Status, string(out.Status), details, "", r.cfg.PluginName, out.ResponseCode)
	}
	return taskID, u, nil
}

// capped returns s, and whether SSM had cut it: SSM returns at most limit characters.
func capped(s string, limit int) (string, bool) {
	if len(s) >= limit {
		return s[:limit], true
	}
	return s, false
}

// normalize lowercases a status and removes the spaces GetCommandInvocation puts in some status details ("Delivery
// Timed Out") so that both spellings compare equal.
func normalize(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, " ", ""))
}
