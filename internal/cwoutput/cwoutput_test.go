package cwoutput_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/cwoutput"
	"github.com/fleetrun/fleetrun/internal/task"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// devices is a store of one device whose command a test sets.
type devices struct {
	mu  sync.Mutex
	ref string
}

func (d *devices) GetDevice(_ context.Context, taskID, deviceID string) (*task.Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if deviceID != "i-0123456789abcdef0" {
		return nil, task.Errorf(task.CodeNotFound, "no device %s", deviceID)
	}
	return &task.Device{TaskID: taskID, ID: deviceID, Status: task.DeviceRunning, Ref: d.ref}, nil
}

// TestFollowReadsTheDevicesLogStreamAsItGrows writes log events as the SSM agent would and
// follows them: nothing before the device has a command, then each event once, in order, from
// the script step's stream, not the download step's.
func TestFollowReadsTheDevicesLogStreamAsItGrows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	logs := cloudwatchlogs.NewFromConfig(awstest.Config(t))
	group := fmt.Sprintf("/fleetrun/test-%d", time.Now().UnixNano())
	if _, err := logs.CreateLogGroup(ctx, &cloudwatchlogs.CreateLogGroupInput{LogGroupName: aws.String(group)}); err != nil {
		t.Fatal(err)
	}
	const instance = "i-0123456789abcdef0"
	put := func(stream string, lines ...string) {
		t.Helper()
		var evs []types.InputLogEvent
		for _, l := range lines {
			evs = append(evs, types.InputLogEvent{Message: aws.String(l), Timestamp: aws.Int64(time.Now().UnixMilli())})
		}
		if _, err := logs.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{LogGroupName: aws.String(group),
			LogStreamName: aws.String(stream), LogEvents: evs}); err != nil {
			t.Fatal(err)
		}
	}
	devs := &devices{}
	out := cwoutput.New(cwoutput.Config{API: logs, Devices: devs, Group: group})
	rc, err := out.FollowOutput(ctx, "T1", instance, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rc); err != nil || len(b) != 0 {
		t.Fatalf("before the device has a command: %q, %v", b, err)
	}
	devs.mu.Lock()
	devs.ref = "cmd-1"
	devs.mu.Unlock()
	for _, s := range []string{"cmd-1/" + instance + "/downloadContent/stdout", "cmd-1/" + instance + "/runShellScript/stdout"} {
		if _, err := logs.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{LogGroupName: aws.String(group),
			LogStreamName: aws.String(s)}); err != nil {
			t.Fatal(err)
		}
	}
	put("cmd-1/"+instance+"/downloadContent/stdout", "downloaded")
	put("cmd-1/"+instance+"/runShellScript/stdout", "line 1", "line 2\n")
	if b, err := io.ReadAll(rc); err != nil || string(b) != "line 1\nline 2\n" {
		t.Fatalf("the first lines: %q, %v", b, err)
	}
	put("cmd-1/"+instance+"/runShellScript/stdout", "line 3")
	if b, err := io.ReadAll(rc); err != nil || string(b) != "line 3\n" {
		t.Fatalf("what came next: %q, %v", b, err)
	}
	if b, err := io.ReadAll(rc); err != nil || len(b) != 0 {
		t.Errorf("with nothing new: %q, %v", b, err)
	}
	whole, err := out.FollowOutput(ctx, "T1", instance, "stdout")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(whole); string(b) != "line 1\nline 2\nline 3\n" {
		t.Errorf("the whole output, read again from the start: %q", b)
	}
	if _, err := out.FollowOutput(ctx, "T1", "i-0fffffffffffffff0", "stdout"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("an unknown device: %v", err)
	}
}
