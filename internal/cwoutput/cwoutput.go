// Package cwoutput reads the output of devices on AWS from CloudWatch Logs, where SSM sends the
// output of the executor's commands when the stack enables it (CommandOutputToCloudWatch):
// while a device runs, not only once it has ended, which is what following an output needs.
//
// The SSM agent writes each step's streams to the log group in log streams named after the
// command, the instance and the step, ending in /stdout and /stderr
// ("<command id>/<instance id>/<step>/stdout"). A device's command is its Ref, recorded once
// SSM reports it running; the stream is found by that prefix, and the step named in Config
// preferred where a document has several (AWS-RunRemoteScript downloads, then runs).
package cwoutput

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/fleetrun/fleetrun/internal/task"
)

// API is the part of *cloudwatchlogs.Client the output uses.
type API interface {
	DescribeLogStreams(ctx context.Context, in *cloudwatchlogs.DescribeLogStreamsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.DescribeLogStreamsOutput, error)
	GetLogEvents(ctx context.Context, in *cloudwatchlogs.GetLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.GetLogEventsOutput, error)
}

// Devices reads a device of a task; a task.Store satisfies it.
type Devices interface {
	GetDevice(ctx context.Context, taskID, deviceID string) (*task.Device, error)
}

// Config wires an Output. API, Devices and Group are required.
type Config struct {
	API     API
	Devices Devices
	// Group is the log group SSM writes the commands' output to.
	Group string
	// Step is the document step whose output a device shows ("runShellScript" when empty).
	Step string
}

// Output serves device output from CloudWatch Logs. It implements httpapi.OutputStore and
// httpapi.OutputFollower.
type Output struct {
	cfg Config
}

// New returns an Output for cfg.
func New(cfg Config) *Output {
	if cfg.Step == "" {
		cfg.Step = "runShellScript"
	}
	return &Output{cfg: cfg}
}

// FollowOutput returns a reader of a device's output stream ("stdout" or "stderr") that gives,
// at each Read, what SSM has sent to CloudWatch since the last, and io.EOF when nothing more
// has arrived yet (including before the device has started, or its log stream exists). Each
// log event is one piece of output; a newline is added after an event that lacks one.
func (o *Output) FollowOutput(ctx context.Context, taskID, deviceID, stream string) (io.ReadCloser, error) {
	if stream != "stdout" && stream != "stderr" {
		return nil, task.Errorf(task.CodeInvalid, "unknown output stream %q", stream)
	}
	if _, err := o.cfg.Devices.GetDevice(ctx, taskID, deviceID); err != nil {
		return nil, err
	}
	return &reader{o: o, ctx: ctx, taskID: taskID, deviceID: deviceID, stream: stream}, nil
}

// reader follows one device's log stream.
type reader struct {
	o                        *Output
	ctx                      context.Context
	taskID, deviceID, stream string
	logStream                string
	token                    *string
	buf                      []byte
}

func (r *reader) Close() error { return nil }

// Read returns buffered output, or fetches the events that arrived since the last fetch.
func (r *reader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if err := r.fetch(); err != nil {
			return 0, err
		}
		if len(r.buf) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// fetch finds the log stream once it exists, then reads the events after the last token.
func (r *reader) fetch() error {
	if r.logStream == "" {
		name, err := r.find()
		if err != nil || name == "" {
			return err
		}
		r.logStream = name
	}
	out, err := r.o.cfg.API.GetLogEvents(r.ctx, &cloudwatchlogs.GetLogEventsInput{
		LogGroupName: aws.String(r.o.cfg.Group), LogStreamName: aws.String(r.logStream),
		StartFromHead: aws.Bool(true), NextToken: r.token})
	if err != nil {
		return fmt.Errorf("cwoutput: read %s: %w", r.logStream, err)
	}
	for _, e := range out.Events {
		msg := aws.ToString(e.Message)
		r.buf = append(r.buf, msg...)
		if !strings.HasSuffix(msg, "\n") {
			r.buf = append(r.buf, '\n')
		}
	}
	if out.NextForwardToken != nil {
		r.token = out.NextForwardToken
	}
	return nil
}

// find returns the name of the device's log stream for r.stream, "" while there is none: the
// device has no command yet, or SSM has not written anything.
func (r *reader) find() (string, error) {
	d, err := r.o.cfg.Devices.GetDevice(r.ctx, r.taskID, r.deviceID)
	if err != nil {
		return "", err
	}
	if d.Ref == "" {
		return "", nil
	}
	prefix := d.Ref + "/" + r.deviceID + "/"
	out, err := r.o.cfg.API.DescribeLogStreams(r.ctx, &cloudwatchlogs.DescribeLogStreamsInput{
		LogGroupName: aws.String(r.o.cfg.Group), LogStreamNamePrefix: aws.String(prefix)})
	var missing *types.ResourceNotFoundException
	if errors.As(err, &missing) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cwoutput: log streams of %s: %w", prefix, err)
	}
	var found []string
	for _, s := range out.LogStreams {
		if name := aws.ToString(s.LogStreamName); strings.HasSuffix(name, "/"+r.stream) {
			found = append(found, name)
		}
	}
	for _, name := range found {
		if strings.Contains(strings.TrimPrefix(name, prefix), r.o.cfg.Step) {
			return name, nil
		}
	}
	if len(found) > 0 {
		return found[len(found)-1], nil
	}
	return "", nil
}
