package awsflow

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestFollowOnAWS follows a device's output through the functions' HTTP API, which delivers
// answers whole. With the stack's CloudWatch output on, the executor's commands send their
// output to the log group, and a follow answers, once the device has ended, with what the log
// stream holds; a follow whose time is up while the device runs is a 409 with Retry-After.
// With it off, a follow answers with the device's inline copy once it has ended.
func TestFollowOnAWS(t *testing.T) {
	f := newFlow(t)
	ctx := t.Context()
	logs := cloudwatchlogs.NewFromConfig(f.base)
	group := "/fleetrun/" + f.name
	if _, err := logs.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(group)}); err != nil {
		t.Fatal(err)
	}
	app := f.wireApp(t, map[string]string{awsapp.EnvOutputLogGroup: group})
	h := f.api(t, app)
	ids := f.devices(1)
	ssmServer.Script(ids[0], ssmtest.Script{Polls: 3, Outcome: ssmtest.Success, Stdout: "inline copy\n"})
	tk := f.submit(t, ids)
	f.handleOnly(t, engine.ActionDispatch)
	cmds := commands(tk.ID)
	if len(cmds) != 1 || cmds[0].CloudWatchLogGroup != group {
		t.Fatalf("the command's CloudWatch output went to %+v, want %s", cmds, group)
	}
	f.runUntil(t, tk.ID, 5, func(tk *task.Task) bool { return tk.Counts.Running == 1 })
	output := "/tasks/" + tk.ID + "/devices/" + ids[0] + "/output?follow=true"

	// The agent writes the script's output as it runs.
	stream := cmds[0].CommandID + "/" + ids[0] + "/runShellScript/stdout"
	if _, err := logs.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream)}); err != nil {
		t.Fatal(err)
	}
	var evs []types.InputLogEvent
	for i := range 3 {
		evs = append(evs, types.InputLogEvent{Message: aws.String(fmt.Sprintf("line %d", i+1)), Timestamp: aws.Int64(time.Now().UnixMilli())})
	}
	if _, err := logs.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream), LogEvents: evs}); err != nil {
		t.Fatal(err)
	}

	// A request whose time is up before the device ends: 409, follow again.
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	a := h.callCtx(short, "GET", output, "")
	cancel()
	var p api.Problem
	if a.decode(t, &p); a.status != http.StatusConflict || p.DeviceStatus != api.DeviceRunning || a.header["Retry-After"] == "" {
		t.Fatalf("follow of a running device when the time is up: %d %s", a.status, a.body)
	}

	// Following again, while the executor brings the device to its end.
	answered := make(chan answer, 1)
	go func() { answered <- h.call("GET", output, "") }()
	f.runUntil(t, tk.ID, 10, terminal)
	select {
	case a = <-answered:
	case <-time.After(20 * time.Second):
		t.Fatal("the follow did not answer once the device had ended")
	}
	if a.status != http.StatusOK || a.body != "line 1\nline 2\nline 3\n" {
		t.Errorf("follow: %d %q; want the log stream's lines", a.status, a.body)
	}

	// Without CloudWatch output, the answer is the device's inline copy.
	plain := f.api(t, f.wireApp(t))
	if a := plain.call("GET", output, ""); a.status != http.StatusOK || a.body != "inline copy\n" {
		t.Errorf("follow without CloudWatch output: %d %q", a.status, a.body)
	}
}
