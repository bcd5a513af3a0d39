package ssmrun

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/fleetrun/fleetrun/internal/ssmcmd"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Invocations reads the invocations of command commandID on instanceIDs, for SSM's
// per-invocation EventBridge events, and returns the update each means by instance id.
// Invocations SSM reports as not started yet, or does not know, are left out.
//
// One device is read with GetCommandInvocation, which returns up to 24,000 characters of
// stdout and 8,000 of stderr. Several devices are read with ListCommandInvocations, fifty
// invocations and their output to a page, instead of a request each: a command has at most
// fifty devices, so one page covers them. The list keeps the first 2,500 characters of a
// device's output, so a device whose listed output was cut, or that the list lacks, is read
// again with GetCommandInvocation for the longer copy.
func (r *Runner) Invocations(ctx context.Context, commandID string, instanceIDs []string) (map[string]task.DeviceUpdate, error) {
	out := make(map[string]task.DeviceUpdate, len(instanceIDs))
	var again []string
	if len(instanceIDs) == 1 {
		again = instanceIDs
	} else {
		listed, err := r.listed(ctx, commandID)
		if err != nil {
			return nil, err
		}
		for _, id := range instanceIDs {
			inv, ok := listed[id]
			if !ok {
				again = append(again, id)
				continue
			}
			u, started := r.update(inv, r.cfg.Now().UTC())
			switch {
			case !started:
			case u.Status.Terminal() && (u.StdoutTruncated || u.StderrTruncated):
				again = append(again, id)
			default:
				out[id] = u
			}
		}
	}
	for _, id := range again {
		u, err := r.invocation(ctx, commandID, id)
		var unknown *types.InvocationDoesNotExist
		if errors.As(err, &unknown) {
			r.log.WarnContext(ctx, "SSM does not know an invocation its event named; left out", "command_id", commandID, "device_id", id)
			continue
		}
		if err != nil {
			return nil, err
		}
		if u.Status != task.DevicePending {
			out[id] = u
		}
	}
	return out, nil
}

// listed returns every invocation of a command, with its output, by instance id.
func (r *Runner) listed(ctx context.Context, commandID string) (map[string]types.CommandInvocation, error) {
	out := map[string]types.CommandInvocation{}
	p := ssm.NewListCommandInvocationsPaginator(r.cfg.API, &ssm.ListCommandInvocationsInput{
		CommandId: aws.String(commandID), Details: true, MaxResults: aws.Int32(BatchSize)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ssmrun: list invocations of command %s: %w", commandID, err)
		}
		for _, inv := range page.CommandInvocations {
			out[aws.ToString(inv.InstanceId)] = inv
		}
	}
	return out, nil
}

// invocation reads one device's invocation with GetCommandInvocation.
func (r *Runner) invocation(ctx context.Context, commandID, instanceID string) (task.DeviceUpdate, error) {
	in := &ssm.GetCommandInvocationInput{CommandId: aws.String(commandID), InstanceId: aws.String(instanceID)}
	if r.cfg.PluginName != "" {
		in.PluginName = aws.String(r.cfg.PluginName)
	}
	out, err := r.cfg.API.GetCommandInvocation(ctx, in)
	if err != nil {
		return task.DeviceUpdate{}, fmt.Errorf("ssmrun: invocation of command %s on %s: %w", commandID, instanceID, err)
	}
	details := aws.ToString(out.StatusDetails)
	u := task.DeviceUpdate{DeviceID: instanceID, Status: ssmcmd.StatusFor(string(out.Status), details),
		At: r.cfg.Now().UTC(), Ref: commandID}
	if u.Status.Terminal() {
		u.Stdout, u.StdoutTruncated = capped(aws.ToString(out.StandardOutputContent), task.StdoutInlineLimit)
		u.Stderr, u.StderrTruncated = capped(aws.ToString(out.StandardErrorContent), task.StderrInlineLimit)
		u.ExitCode = exitCode(u.Status, out.ResponseCode)
		u.Reason = reason(u.Status, string(out.Status), details, "", r.cfg.PluginName, out.ResponseCode)
	}
	return u, nil
}
