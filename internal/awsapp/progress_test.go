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
	invocation task.DeviceUpdate
	invokeErr  error
	invoked    int
}

func (f *fakeSSM) TaskForCommand(_ context.Context, commandID string) (string, error) {
	if f.lookupErr != nil {
		return "", f.lookupErr
	}
	id, ok := f.tasks[commandID]
	if !ok {
		return "", task.Errorf(task.CodeNotFound, "no command %s", commandID)
	}
	return id, nil
}

func (f *fakeSSM) Invocation(ctx context.Context, commandID, instanceID string) (string, task.DeviceUpdate, error) {
	f.invoked++
	id, err := f.TaskForCommand(ctx, commandID)
	if err != nil {
		return "", task.DeviceUpdate{}, fmt.Errorf("ssmrun: task of command %s: %w", commandID, err)
	}
	if f.invokeErr != nil {
		return "", task.DeviceUpdate{}, f.invokeErr
	}
	u := f.invocation
	u.DeviceID, u.Ref = instanceID, commandID
	return id, u, nil
}

// reported is one call of report.
type reported struct {
	taskID  string
	updates []task.DeviceUpdate
}

func ssmEvent(status, details string) events.EventBridgeEvent {
	detail, _ := json.Marshal(map[string]string{"command-id": "cmd-1", "instance-id": "i-0123456789abcdef0",
		"document-name": "AWS-RunRemoteScript", "status": status, "status-details": details})
	return events.EventBridgeEvent{Version: "0", ID: "ev-1", Source: InvocationEventSource, DetailType: InvocationEventType,
		Time: time.Date(2025, 3, 1, 10, 0, 41, 0, time.UTC), Detail: detail}
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
		{name: "another deployment's finished command is dropped", ev: ssmEvent("Success", ""), ssm: fakeSSM{tasks: map[string]string{}}, wantRead: true},
		{
			name: "an invocation SSM does not know is dropped", ev: ssmEvent("Success", ""),
			ssm: fakeSSM{invokeErr: fmt.Errorf("ssmrun: invocation: %w", &smithy.GenericAPIError{Code: "InvocationDoesNotExist"})}, wantRead: true,
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
			p := progress{tasks: &ssm, invocations: &ssm, now: time.Now, log: slog.New(slog.DiscardHandler),
				report: func(_ context.Context, id string, u []task.DeviceUpdate) (*task.Task, error) {
					got = append(got, reported{id, u})
					if tt.reportErr != nil {
						return nil, tt.reportErr
					}
					return &task.Task{ID: id, Status: task.StatusRunning}, nil
				}}
			err := p.handle(context.Background(), tt.ev)
			if (err != nil) != tt.wantErr {
				t.Fatalf("handle = %v, want error %v", err, tt.wantErr)
			}
			if (ssm.invoked > 0) != tt.wantRead {
				t.Errorf("invocation read %d times, want read %v", ssm.invoked, tt.wantRead)
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
