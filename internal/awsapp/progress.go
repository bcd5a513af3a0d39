package awsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/smithy-go"

	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/task"
)

// SSM's event for one device's invocation changing status, which the template's rule on the
// default bus sends to ProgressFunction.
const (
	InvocationEventSource = "aws.ssm"
	InvocationEventType   = "EC2 Command Invocation Status-change Notification"
)

// invocationDetail is the detail of an invocation status-change event. status-details is not
// in AWS's published examples; when it is there it tells an undeliverable node from a failure.
type invocationDetail struct {
	CommandID     string `json:"command-id"`
	InstanceID    string `json:"instance-id"`
	DocumentName  string `json:"document-name"`
	Status        string `json:"status"`
	StatusDetails string `json:"status-details"`
}

// progress applies invocation events to devices. Its parts are interfaces so that the rules
// for dropping and retrying events can be tested without AWS.
type progress struct {
	// tasks finds the task a command was sent for (the DynamoDB store).
	tasks interface {
		TaskForCommand(ctx context.Context, commandID string) (string, error)
	}
	// invocations reads a finished invocation's exit code and output (the SSM runner).
	invocations interface {
		Invocation(ctx context.Context, commandID, instanceID string) (string, task.DeviceUpdate, error)
	}
	// report applies device updates and finishes the task when they were the last (the engine).
	report func(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, error)
	now    func() time.Time
	log    *slog.Logger
}

// Progress returns the handler of ProgressFunction. Each event becomes at most one device
// update through the command-id → task mapping; the store applies only forward moves, so
// duplicated and out-of-order events change nothing. A finished invocation is read again with
// GetCommandInvocation for its exit code and output, which the event does not carry.
//
// Events that can never apply are logged and dropped (nil): another source, a malformed
// detail, a command this deployment did not send (SSM sends every command's events to the
// account's default bus), an expired task. Errors that may pass (throttling, an unreachable
// table) are returned, so Lambda retries the event; polling reconciles whatever is lost.
func (a *App) Progress() func(context.Context, events.EventBridgeEvent) error {
	p := progress{tasks: a.Store, invocations: a.Runner, report: a.Engine.Report, now: time.Now, log: a.Log}
	return p.handle
}

func (p progress) handle(ctx context.Context, ev events.EventBridgeEvent) error {
	if ev.Source != InvocationEventSource || ev.DetailType != InvocationEventType {
		p.log.WarnContext(ctx, "event of another kind dropped", "source", ev.Source, "detail_type", ev.DetailType, "event_id", ev.ID)
		return nil
	}
	var d invocationDetail
	if err := json.Unmarshal(ev.Detail, &d); err != nil || d.CommandID == "" || d.InstanceID == "" {
		p.log.ErrorContext(ctx, "malformed invocation event dropped", "event_id", ev.ID, "detail", string(ev.Detail), "err", err)
		return nil
	}
	attrs := []any{"command_id", d.CommandID, "device_id", d.InstanceID, "ssm_status", d.Status, "event_id", ev.ID}
	st := ssmrun.EventStatus(d.Status, d.StatusDetails)
	if st == task.DevicePending {
		p.log.DebugContext(ctx, "invocation not started yet; nothing to report", attrs...)
		return nil
	}
	var taskID string
	var u task.DeviceUpdate
	var err error
	if st.Terminal() {
		taskID, u, err = p.invocations.Invocation(ctx, d.CommandID, d.InstanceID)
	} else {
		taskID, err = p.tasks.TaskForCommand(ctx, d.CommandID)
		at := ev.Time
		if at.IsZero() {
			at = p.now()
		}
		u = task.DeviceUpdate{DeviceID: d.InstanceID, Status: st, At: at.UTC(), Ref: d.CommandID}
	}
	switch {
	case task.IsCode(err, task.CodeNotFound):
		p.log.InfoContext(ctx, "event for a command of no known task dropped", append(attrs, "err", err)...)
		return nil
	case apiErrorCode(err) == "InvocationDoesNotExist":
		p.log.WarnContext(ctx, "event for an invocation SSM does not know dropped", append(attrs, "err", err)...)
		return nil
	case err != nil:
		return fmt.Errorf("awsapp: event %s for command %s on %s: %w", ev.ID, d.CommandID, d.InstanceID, err)
	}
	attrs = append(attrs, "task_id", taskID, "status", u.Status)
	if u.Status == task.DevicePending {
		// SSM's read lags its own event; the next poll reports the device.
		p.log.InfoContext(ctx, "invocation reads as not started yet; left to polling", attrs...)
		return nil
	}
	t, err := p.report(ctx, taskID, []task.DeviceUpdate{u})
	if task.IsCode(err, task.CodeNotFound) {
		p.log.InfoContext(ctx, "event for an expired task dropped", attrs...)
		return nil
	}
	if err != nil {
		return fmt.Errorf("awsapp: report %s of %s on %s: %w", u.Status, taskID, d.InstanceID, err)
	}
	p.log.InfoContext(ctx, "device progress", append(attrs, "task_status", t.Status, "percentage", t.Counts.Percentage())...)
	return nil
}

// apiErrorCode is the AWS error code in err's chain, or "".
func apiErrorCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}
