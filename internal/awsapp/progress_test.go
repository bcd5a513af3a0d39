package awsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/smithy-go"

	"github.com/fleetrun/fleetrun/internal/task"
)

// fakeSSM plays the command log and the runner for the progress handler.
type fakeSSM struct {
	tasks      map[string]string // command id → task id
	lookupErr  error
	lookups    int
	invocation task.DeviceUpdate
	invokeErr  error
	invoked    [][]string // the devices of each Invocations call
}

func (f *fakeSSM) TaskForCommand(_ context.Context, commandID string) (string, error) {
	f.lookups++
	if f.lookupErr != nil {
		return "", f.lookupErr
	}
	id, ok := f.tasks[commandID]
	if !ok {
		return "", task.Errorf(task.CodeNotFound, "no command %s", commandID)
	}
	return id, nil
}

func (f *fakeSSM) Invocations(_ context.Context, commandID string, ids []string) (map[string]task.DeviceUpdate, error) {
	f.invoked = append(f.invoked, ids)
	if f.invokeErr != nil {
		return nil, f.invokeErr
	}
	out := map[string]task.DeviceUpdate{}
	for _, id := range ids {
		if f.invocation.Status == task.DevicePending {
			continue // SSM's read lags its event
		}
		u := f.invocation
		u.DeviceID, u.Ref = id, commandID
		out[id] = u
	}
	return out, nil
}

// reported is one call of report.
type reported struct {
	taskID  string
	updates []task.DeviceUpdate
}

func ssmEvent(status, details string) events.EventBridgeEvent {
	return deviceEvent("cmd-1", "i-0123456789abcdef0", status, details)
}

func deviceEvent(commandID, instanceID, status, details string) events.EventBridgeEvent {
	detail, _ := json.Marshal(map[string]string{"command-id": commandID, "instance-id": instanceID,
		"document-name": "AWS-RunRemoteScript", "status": status, "status-details": details})
	return events.EventBridgeEvent{Version: "0", ID: "ev-" + instanceID + "-" + status, Source: InvocationEventSource,
		DetailType: InvocationEventType, Time: time.Date(2025, 3, 1, 10, 0, 41, 0, time.UTC), Detail: detail}
}

// batch is the SQS batch Lambda hands ProgressFunction for evs, as EventBridge sends each to
// the queue: the record's body is the whole event.
func batch(evs ...events.EventBridgeEvent) events.SQSEvent {
	var b events.SQSEvent
	for i, e := range evs {
		body, _ := json.Marshal(e)
		b.Records = append(b.Records, events.SQSMessage{MessageId: fmt.Sprintf("m-%d", i), Body: string(body)})
	}
	return b
}

func failures(r events.SQSEventResponse) []string {
	out := []string{}
	for _, f := range r.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	return out
}

func TestProgress(t *testing.T) {
	t.Parallel()
	throttled := &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
	exit0 := 0
	succeeded := task.DeviceUpdate{Status: task.DeviceSucceeded, ExitCode: &exit0, Stdout: "ok\n"}
	tests := []struct {
		name       string
		ev         events.EventBridgeEvent
		ssm        fakeSSM
		reportErr  error
		wantErr    bool
		wantReport []task.DeviceUpdate
		wantRead   bool // whether the invocation was read for its output
	}{
		{
			name: "in progress is reported from the event alone", ev: ssmEvent("InProgress", ""),
			wantReport: []task.DeviceUpdate{{DeviceID: "i-0123456789abcdef0", Status: task.DeviceRunning,
				At: time.Date(2025, 3, 1, 10, 0, 41, 0, time.UTC), Ref: "cmd-1"}},
		},
		{
			name: "a finished invocation is read for its exit code and output", ev: ssmEvent("Success", ""),
			ssm:        fakeSSM{invocation: succeeded},
			wantReport: []task.DeviceUpdate{{DeviceID: "i-0123456789abcdef0", Status: task.DeviceSucceeded, ExitCode: &exit0, Stdout: "ok\n", Ref: "cmd-1"}},
			wantRead:   true,
		},
		{
			name: "an undeliverable node is finished too", ev: ssmEvent("Failed", "Undeliverable"),
			ssm:        fakeSSM{invocation: task.DeviceUpdate{Status: task.DeviceUndeliverable}},
			wantReport: []task.DeviceUpdate{{DeviceID: "i-0123456789abcdef0", Status: task.DeviceUndeliverable, Ref: "cmd-1"}},
			wantRead:   true,
		},
		{name: "pending is nothing to report", ev: ssmEvent("Pending", "")},
		{name: "delayed is nothing to report", ev: ssmEvent("Delayed", "")},
		{
			name: "SSM's read lagging behind its event is left to polling", ev: ssmEvent("Success", ""),
			ssm: fakeSSM{invocation: task.DeviceUpdate{Status: task.DevicePending}}, wantRead: true,
		},
		{name: "another deployment's command is dropped", ev: ssmEvent("InProgress", ""), ssm: fakeSSM{tasks: map[string]string{}}},
		{name: "another deployment's finished command is dropped unread", ev: ssmEvent("Success", ""), ssm: fakeSSM{tasks: map[string]string{}}},
		{
			name: "an invocation SSM does not know is dropped", ev: ssmEvent("Success", ""),
			ssm: fakeSSM{invocation: task.DeviceUpdate{Status: task.DevicePending}}, wantRead: true,
		},
		{name: "throttling is retried", ev: ssmEvent("Success", ""), ssm: fakeSSM{invokeErr: throttled}, wantErr: true, wantRead: true},
		{name: "a failing table is retried", ev: ssmEvent("InProgress", ""), ssm: fakeSSM{lookupErr: errors.New("connection reset")}, wantErr: true},
		{
			name: "an expired task is dropped", ev: ssmEvent("InProgress", ""), reportErr: task.Errorf(task.CodeNotFound, "expired"),
			wantReport: []task.DeviceUpdate{{DeviceID: "i-0123456789abcdef0", Status: task.DeviceRunning,
				At: time.Date(2025, 3, 1, 10, 0, 41, 0, time.UTC), Ref: "cmd-1"}},
		},
		{
			name: "a failing report is retried", ev: ssmEvent("InProgress", ""), reportErr: task.Errorf(task.CodeUnavailable, "busy"), wantErr: true,
			wantReport: []task.DeviceUpdate{{DeviceID: "i-0123456789abcdef0", Status: task.DeviceRunning,
				At: time.Date(2025, 3, 1, 10, 0, 41, 0, time.UTC), Ref: "cmd-1"}},
		},
		{name: "another source is dropped", ev: func() events.EventBridgeEvent { e := ssmEvent("Success", ""); e.Source = "fleetrun"; return e }()},
		{name: "a malformed detail is dropped", ev: func() events.EventBridgeEvent {
			e := ssmEvent("Success", "")
			e.Detail = json.RawMessage(`{"status":"Success"}`)
			return e
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ssm := tt.ssm
			if ssm.tasks == nil {
				ssm.tasks = map[string]string{"cmd-1": "task-1"}
			}
			var got []reported
			p := &progress{tasks: &ssm, invocations: &ssm, now: time.Now, log: slog.New(slog.DiscardHandler),
				report: func(_ context.Context, id string, u []task.DeviceUpdate) (*task.Task, error) {
					got = append(got, reported{id, u})
					if tt.reportErr != nil {
						return nil, tt.reportErr
					}
					return &task.Task{ID: id, Status: task.StatusRunning}, nil
				}}
			failed := failures(p.handle(context.Background(), batch(tt.ev)))
			if (len(failed) > 0) != tt.wantErr {
				t.Fatalf("batch item failures %v, want the event delivered again: %v", failed, tt.wantErr)
			}
			if (len(ssm.invoked) > 0) != tt.wantRead {
				t.Errorf("invocations read %d times, want read %v", len(ssm.invoked), tt.wantRead)
			}
			if tt.wantReport == nil {
				if len(got) > 0 {
					t.Errorf("reported %+v, want nothing", got)
				}
				return
			}
			if len(got) != 1 || got[0].taskID != "task-1" {
				t.Fatalf("reported %+v, want one report for task-1", got)
			}
			gj, _ := json.Marshal(got[0].updates)
			wj, _ := json.Marshal(tt.wantReport)
			if string(gj) != string(wj) {
				t.Errorf("updates = %s, want %s", gj, wj)
			}
		})
	}
}

// TestProgressBatches: a batch's events share the work. Each command's task is looked up once
// (and not again in the next batch), the finished devices of each command are read in one
// call, and each task gets one report with every update of the batch, duplicates included,
// in the order of the events. A record that is no event at all is left to the dead-letter
// queue; the others are not held back by it.
func TestProgressBatches(t *testing.T) {
	t.Parallel()
	exit0 := 0
	ssm := &fakeSSM{tasks: map[string]string{"cmd-a": "task-1", "cmd-b": "task-1", "cmd-c": "task-2"},
		invocation: task.DeviceUpdate{Status: task.DeviceSucceeded, ExitCode: &exit0}}
	reports := map[string][]task.DeviceUpdate{}
	calls := 0
	p := &progress{tasks: ssm, invocations: ssm, now: time.Now, log: slog.New(slog.DiscardHandler),
		report: func(_ context.Context, id string, u []task.DeviceUpdate) (*task.Task, error) {
			calls++
			reports[id] = append(reports[id], u...)
			return &task.Task{ID: id, Status: task.StatusRunning}, nil
		}}
	b := batch(
		deviceEvent("cmd-a", "i-1", "InProgress", ""),
		deviceEvent("cmd-a", "i-2", "Success", ""),
		deviceEvent("cmd-b", "i-3", "Success", ""),
		deviceEvent("cmd-a", "i-1", "Success", ""),
		deviceEvent("cmd-c", "i-9", "InProgress", ""),
		deviceEvent("cmd-a", "i-2", "Success", ""), // a duplicate
		deviceEvent("cmd-b", "i-4", "Pending", ""),
	)
	b.Records = append(b.Records, events.SQSMessage{MessageId: "garbage", Body: "not json"})
	if failed := failures(p.handle(t.Context(), b)); len(failed) != 1 || failed[0] != "garbage" {
		t.Errorf("batch item failures %v, want only the record that is no event", failed)
	}
	if ssm.lookups != 3 || calls != 2 {
		t.Errorf("%d task lookups and %d reports; want one lookup per command (3) and one report per task (2)", ssm.lookups, calls)
	}
	if len(ssm.invoked) != 2 || fmt.Sprint(ssm.invoked) != "[[i-2 i-1] [i-3]]" {
		t.Errorf("invocations read as %v, want cmd-a's finished devices together, then cmd-b's", ssm.invoked)
	}
	var got []string
	for _, u := range reports["task-1"] {
		got = append(got, u.DeviceID+":"+string(u.Status))
	}
	if want := "[i-1:running i-2:succeeded i-1:succeeded i-2:succeeded i-3:succeeded]"; fmt.Sprint(got) != want {
		t.Errorf("task-1's updates %v, want %s", got, want)
	}
	if u := reports["task-2"]; len(u) != 1 || u[0].DeviceID != "i-9" || u[0].Status != task.DeviceRunning {
		t.Errorf("task-2's updates %+v", u)
	}

	// The next batch of the same instance finds the commands' tasks in memory.
	p.handle(t.Context(), batch(deviceEvent("cmd-a", "i-5", "InProgress", ""), deviceEvent("cmd-c", "i-9", "Success", "")))
	if ssm.lookups != 3 {
		t.Errorf("the second batch looked commands up again: %d lookups in all", ssm.lookups)
	}
}
