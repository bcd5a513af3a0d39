package awsapp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/internal/ssmcmd"
	"github.com/fleetrun/fleetrun/internal/task"
)

// SSM's event for one device's invocation changing status, which the template's rule on the
// default bus sends to the progress queue.
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

// progress applies batches of invocation events to devices. Its parts are interfaces so that
// the rules for grouping, dropping and retrying events can be tested without AWS.
type progress struct {
	// tasks finds the task a command was sent for (the DynamoDB store).
	tasks interface {
		TaskForCommand(ctx context.Context, commandID string) (string, error)
	}
	// invocations reads finished invocations' exit codes and output (the SSM runner).
	invocations interface {
		Invocations(ctx context.Context, commandID string, instanceIDs []string) (map[string]task.DeviceUpdate, error)
	}
	// report applies device updates and finishes the task when they were the last (the engine).
	report func(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, error)
	now    func() time.Time
	log    *slog.Logger

	// commands remembers which task each command belongs to, which never changes, so that a
	// warm instance reads the mapping of a command once, not once per batch.
	mu       sync.Mutex
	commands map[string]string
}

// maxRememberedCommands bounds progress.commands; past it the memory starts again.
const maxRememberedCommands = 4096

// Progress returns the handler of ProgressFunction, the consumer of the progress queue. The
// template's rule sends SSM's invocation status-change events to that queue, and Lambda hands
// the function what arrived within its batching window in one invocation, so that the events
// of many devices of a task share the work:
//
//   - the command → task mapping is read once per command (and remembered by the instance);
//   - the finished invocations of one command are read together (Runner.Invocations: a page
//     of ListCommandInvocations for many devices, GetCommandInvocation for one);
//   - the updates of one task are applied by one engine.Report, one read and one
//     transaction per hundred devices, and the task finished when they were its last.
//
// The store applies only forward moves, so duplicated and out-of-order events change nothing.
// Events that can never apply are logged and dropped: another source, a malformed detail, a
// command this deployment did not send (SSM sends every command's events to the account's
// default bus), an expired task. A record whose event may apply later (throttling, an
// unreachable table) is reported as a batch item failure, so that SQS delivers it again and,
// after the redrive policy's receives, moves it to the dead-letter queue; polling reconciles
// whatever is lost. A body that is not an event at all is reported too, for the dead-letter
// queue to keep.
func (a *App) Progress() func(context.Context, events.SQSEvent) (events.SQSEventResponse, error) {
	var runner Runner = missing{"SSM runner"}
	if a.Parts.Runner != nil {
		runner = a.Parts.Runner
	}
	p := &progress{tasks: a.Store, invocations: runner, report: a.Engine.Report, now: time.Now, log: a.Log}
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		ctx, cancel := reserve(ctx)
		defer cancel()
		return p.handle(ctx, ev), nil
	}
}

// invocationEvent is one record's event, read.
type invocationEvent struct {
	messageID string
	eventID   string
	detail    invocationDetail
	status    task.DeviceStatus
	at        time.Time
}

// handle applies one batch and returns the records to deliver again.
func (p *progress) handle(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	fail := func(evs []invocationEvent, msg string, err error) {
		for _, e := range evs {
			p.log.WarnContext(ctx, msg, append(e.attrs(), "err", err)...)
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: e.messageID})
		}
	}
	// The events by command, in the order their commands first appear.
	byCommand := map[string][]invocationEvent{}
	var commands []string
	for _, r := range ev.Records {
		e, ok, err := p.read(ctx, r)
		if err != nil {
			fail([]invocationEvent{{messageID: r.MessageId}}, "progress message that is not an event left to the dead-letter queue", err)
			continue
		}
		if !ok {
			continue
		}
		if _, seen := byCommand[e.detail.CommandID]; !seen {
			commands = append(commands, e.detail.CommandID)
		}
		byCommand[e.detail.CommandID] = append(byCommand[e.detail.CommandID], e)
	}
	type taskWork struct {
		updates []task.DeviceUpdate
		events  []invocationEvent
	}
	work := map[string]*taskWork{}
	var tasks []string
	for _, cmd := range commands {
		evs := byCommand[cmd]
		taskID, err := p.taskFor(ctx, cmd)
		if task.IsCode(err, task.CodeNotFound) {
			for _, e := range evs {
				p.log.InfoContext(ctx, "event for a command of no known task dropped", append(e.attrs(), "err", err)...)
			}
			continue
		}
		if err != nil {
			fail(evs, "event not applied; it will be delivered again", err)
			continue
		}
		var finished []string
		for _, e := range evs {
			if e.status.Terminal() && !slices.Contains(finished, e.detail.InstanceID) {
				finished = append(finished, e.detail.InstanceID)
			}
		}
		var read map[string]task.DeviceUpdate
		if len(finished) > 0 {
			if read, err = p.invocations.Invocations(ctx, cmd, finished); err != nil {
				fail(evs, "invocations not read; the events will be delivered again", err)
				continue
			}
		}
		w := work[taskID]
		if w == nil {
			w = &taskWork{}
			work[taskID] = w
			tasks = append(tasks, taskID)
		}
		for _, e := range evs {
			u := task.DeviceUpdate{DeviceID: e.detail.InstanceID, Status: e.status, At: e.at, Ref: cmd}
			if e.status.Terminal() {
				var ok bool
				if u, ok = read[e.detail.InstanceID]; !ok {
					// SSM's read lags its own event; the next poll reports the device.
					p.log.InfoContext(ctx, "invocation reads as not started yet; left to polling", append(e.attrs(), "task_id", taskID)...)
					continue
				}
			}
			w.updates = append(w.updates, u)
			w.events = append(w.events, e)
		}
	}
	for _, id := range tasks {
		w := work[id]
		if len(w.updates) == 0 {
			continue
		}
		t, err := p.report(ctx, id, w.updates)
		if task.IsCode(err, task.CodeNotFound) {
			p.log.InfoContext(ctx, "events for an expired task dropped", "task_id", id, "events", len(w.events))
			continue
		}
		if err != nil {
			fail(w.events, "device progress not applied; it will be delivered again", fmt.Errorf("awsapp: report %d updates of %s: %w", len(w.updates), id, err))
			continue
		}
		p.log.InfoContext(ctx, "device progress", "task_id", id, "updates", len(w.updates), "task_status", t.Status,
			"percentage", t.Counts.Percentage())
	}
	return resp
}

// read decodes one record's event. ok is false for an event that never applies, which is
// logged; an error means the body is no event at all.
func (p *progress) read(ctx context.Context, r events.SQSMessage) (e invocationEvent, ok bool, err error) {
	var ev events.EventBridgeEvent
	if err := json.Unmarshal([]byte(r.Body), &ev); err != nil {
		return invocationEvent{}, false, fmt.Errorf("awsapp: decode an event: %w", err)
	}
	e = invocationEvent{messageID: r.MessageId, eventID: ev.ID, at: ev.Time}
	if ev.Source != InvocationEventSource || ev.DetailType != InvocationEventType {
		p.log.WarnContext(ctx, "event of another kind dropped", "source", ev.Source, "detail_type", ev.DetailType, "event_id", ev.ID)
		return e, false, nil
	}
	if err := json.Unmarshal(ev.Detail, &e.detail); err != nil || e.detail.CommandID == "" || e.detail.InstanceID == "" {
		p.log.ErrorContext(ctx, "malformed invocation event dropped", "event_id", ev.ID, "detail", string(ev.Detail), "err", err)
		return e, false, nil
	}
	if e.status = ssmcmd.EventStatus(e.detail.Status, e.detail.StatusDetails); e.status == task.DevicePending {
		p.log.DebugContext(ctx, "invocation not started yet; nothing to report", e.attrs()...)
		return e, false, nil
	}
	if e.at.IsZero() {
		e.at = p.now()
	}
	e.at = e.at.UTC()
	return e, true, nil
}

// taskFor returns the task of a command, from memory when this instance has read it before.
func (p *progress) taskFor(ctx context.Context, commandID string) (string, error) {
	p.mu.Lock()
	id, ok := p.commands[commandID]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := p.tasks.TaskForCommand(ctx, commandID)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.commands == nil || len(p.commands) >= maxRememberedCommands {
		p.commands = map[string]string{}
	}
	p.commands[commandID] = id
	return id, nil
}

// attrs names an event in the log.
func (e invocationEvent) attrs() []any {
	return []any{"message_id", e.messageID, "event_id", e.eventID, "command_id", e.detail.CommandID,
		"device_id", e.detail.InstanceID, "ssm_status", e.detail.Status}
}
