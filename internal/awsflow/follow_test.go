package awsflow

import (
	"bufio"
	"context"
	"io"
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

// TestFollowOnAWS follows a device's output through the functions' REST API, whose output
// route streams (awsapp.StreamedRoutes). With the stack's CloudWatch output on, the executor's
// commands send their output to the log group; a follow streams each line the log stream
// receives while the device still runs, and ends once the device has ended. A follow again
// from an offset leaves out what the caller has. With it off there is nothing to stream: a
// follow of a running device is a 409 with Retry-After once its wait is over, and once the
// device has ended the answer is its whole output.
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
	put := func(lines ...string) {
		t.Helper()
		var evs []types.InputLogEvent
		for _, l := range lines {
			evs = append(evs, types.InputLogEvent{Message: aws.String(l), Timestamp: aws.Int64(time.Now().UnixMilli())})
		}
		if _, err := logs.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String(group), LogStreamName: aws.String(stream), LogEvents: evs}); err != nil {
			t.Fatal(err)
		}
	}
	put("line 1", "line 2")

	// The stream's context bounds every read below: the function ends the answer at its
	// deadline, and a read waiting for more then returns.
	streamCtx, cancelStream := context.WithTimeout(ctx, time.Minute)
	defer cancelStream()
	resp := h.stream(streamCtx, "GET", output)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("follow: %d %s", resp.StatusCode, b)
	}
	lines := bufio.NewReader(resp.Body)
	readLine := func(want string) {
		t.Helper()
		if line, err := lines.ReadString('\n'); err != nil || line != want {
			t.Fatalf("streamed %q, %v; want %q", line, err, want)
		}
	}
	readLine("line 1\n")
	readLine("line 2\n")
	put("line 3")
	readLine("line 3\n")
	if d := f.deviceStates(t, tk.ID)[ids[0]]; d.Status != task.DeviceRunning {
		t.Fatalf("the device is %s while its lines stream, want running", d.Status)
	}

	// Without CloudWatch output: a follow of the running device is a 409 once its time is up.
	plain := f.api(t, f.wireApp(t))
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	a := plain.callCtx(short, "GET", output, "")
	cancel()
	var p api.Problem
	if a.decode(t, &p); a.status != http.StatusConflict || p.DeviceStatus != api.DeviceRunning || a.header["Retry-After"] == "" {
		t.Fatalf("follow without CloudWatch output of a running device: %d %s", a.status, a.body)
	}

	// The device ends: the stream sends the rest and ends.
	put("line 4")
	f.runUntil(t, tk.ID, 10, terminal)
	if rest, err := io.ReadAll(lines); err != nil || string(rest) != "line 4\n" || streamCtx.Err() != nil {
		t.Errorf("the stream ended with %q, %v (context: %v); want the last line, once the device ended", rest, err, streamCtx.Err())
	}
	if a := h.call("GET", output+"&offset=7", ""); a.status != http.StatusOK || a.body != "line 2\nline 3\nline 4\n" {
		t.Errorf("follow from offset 7: %d %q", a.status, a.body)
	}
	if a := plain.call("GET", output, ""); a.status != http.StatusOK || a.body != "inline copy\n" {
		t.Errorf("follow without CloudWatch output of the ended device: %d %q", a.status, a.body)
	}
}
