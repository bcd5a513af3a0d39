package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetrun/fleetrun/api"
)

// CancelDevice cancels device deviceID of task id while the task goes on with its others, and
// returns the device as it now is: cancelled when it had not started (or was cancelled
// before), running while it is being stopped (poll Device until it is cancelled). A device
// that ended otherwise, or one of a finished task, cannot be cancelled: the error satisfies
// IsConflict and carries DeviceStatus and TaskStatus.
func (c *Client) CancelDevice(ctx context.Context, id, deviceID string) (*api.Device, error) {
	var d api.Device
	if _, err := c.doJSON(ctx, call{method: http.MethodDelete, path: taskPath(id, "devices", deviceID), retry: true}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Device returns one device of task id as it is now.
func (c *Client) Device(ctx context.Context, id, deviceID string) (*api.Device, error) {
	var d api.Device
	if _, err := c.doJSON(ctx, call{method: http.MethodGet, path: taskPath(id, "devices", deviceID), retry: true}, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// RelaunchFailed, RelaunchAll and RelaunchDevices are the selections of a RelaunchRequest:
// every device that did not succeed, every device, or the devices named.
func RelaunchFailed() json.RawMessage { return json.RawMessage(`"` + api.RelaunchFailed + `"`) }

// RelaunchAll selects every device of the task.
func RelaunchAll() json.RawMessage { return json.RawMessage(`"` + api.RelaunchAll + `"`) }

// RelaunchDevices selects the devices named.
func RelaunchDevices(ids ...string) json.RawMessage {
	b, _ := json.Marshal(ids)
	return b
}

// Relaunch runs finished task id again on the devices req.Devices selects (RelaunchFailed,
// RelaunchAll, RelaunchDevices) as a new task, and returns it; its RelaunchOf names id. It
// carries an Idempotency-Key like Submit, so it is retried safely. A task that has not
// finished is an error for which IsConflict is true; a "failed" relaunch of a task whose
// every device succeeded one for which IsValidation is.
func (c *Client) Relaunch(ctx context.Context, id string, req api.RelaunchRequest, opts ...SubmitOption) (*api.Task, error) {
	return c.create(ctx, taskPath(id, "relaunch"), "relaunch", req, opts)
}

// FollowOutput returns device deviceID's output on stream as it is written, ending when the
// device ends (GET …/output?follow=true). The caller closes the reader.
//
// A followed answer may end before the device does — on AWS a streamed answer lasts at most
// 15 minutes, and API Gateway closes one that has been silent for 5 — or be cut. So when an
// answer ends, the reader asks for the device: while it has not ended, it follows again from
// where it was (offset), and once it has, it follows one last time, an answer that then holds
// everything written after what it already has. What it reads is the output once, whole, to
// the device's end. Where the server can only answer once the device has ended and the device
// is still working when its wait is over (409), it asks again after the server's Retry-After.
// It stops when ctx ends.
func (c *Client) FollowOutput(ctx context.Context, id, deviceID string, stream Stream) (io.ReadCloser, error) {
	if stream == "" {
		stream = Stdout
	}
	f := &follower{c: c, ctx: ctx, id: id, deviceID: deviceID, stream: stream}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

// follower is the reader FollowOutput returns.
type follower struct {
	c            *Client
	ctx          context.Context
	id, deviceID string
	stream       Stream
	body         io.ReadCloser
	read         int64 // bytes returned so far
	skip         int64 // bytes of the current answer still to drop
	// last says that the current answer was asked for after the device had ended, so that its
	// end is the output's.
	last bool
	// fruitless counts the answers in a row that ended without a byte of new output.
	fruitless  int
	progressed bool
}

// maxFruitlessFollows bounds the answers in a row that end, or fail, without new output, so
// that a server that keeps cutting its answers short is reported rather than asked forever.
const maxFruitlessFollows = 10

// open asks for the output from offset f.read (again after a 409, when the server says to).
// An answer that a redirect took elsewhere (a presigned URL) holds the whole output, and what
// was already read is dropped here.
func (f *follower) open() error {
	query := url.Values{"stream": {string(f.stream)}, "follow": {"true"}}
	if f.read > 0 {
		query.Set("offset", strconv.FormatInt(f.read, 10))
	}
	for {
		resp, err := f.c.do(f.ctx, call{method: http.MethodGet, path: taskPath(f.id, "devices", f.deviceID, "output"),
			query: query, retry: true, header: http.Header{"Accept": {"text/plain, " + api.MediaProblem}}})
		var e *Error
		if !errors.As(err, &e) || !IsNotFinished(err) {
			if err != nil {
				return err
			}
			f.body, f.skip, f.progressed = resp.Body, 0, false
			if resp.Request != nil && !strings.HasSuffix(resp.Request.URL.Path, "/output") {
				f.skip = f.read
			}
			return nil
		}
		if err := sleepCtx(f.ctx, f.c.capPause(max(e.RetryAfter, f.c.retry.BaseDelay))); err != nil {
			return fmt.Errorf("client: follow output of %s on %s: %w", f.deviceID, f.id, err)
		}
	}
}

// Read implements io.Reader.
func (f *follower) Read(p []byte) (int, error) {
	for {
		if f.body == nil {
			if err := f.open(); err != nil {
				return 0, err
			}
		}
		n, err := f.body.Read(p)
		if drop := min(int64(n), f.skip); drop > 0 {
			f.skip -= drop
			n = copy(p, p[drop:n])
		}
		if n > 0 {
			f.read += int64(n)
			f.progressed, f.fruitless = true, 0
			return n, nil
		}
		if err == nil {
			continue
		}
		f.body.Close()
		f.body = nil
		if ctxErr := f.ctx.Err(); ctxErr != nil {
			return 0, ctxErr
		}
		if f.last && err == io.EOF {
			return 0, io.EOF
		}
		if !f.progressed {
			if f.fruitless++; f.fruitless >= maxFruitlessFollows {
				return 0, fmt.Errorf("client: follow output of %s on %s: %d answers in a row ended without new output: %w",
					f.deviceID, f.id, f.fruitless, err)
			}
			if err := sleepCtx(f.ctx, f.c.capPause(f.c.retry.BaseDelay)); err != nil {
				return 0, err
			}
		}
		d, derr := f.c.Device(f.ctx, f.id, f.deviceID)
		if derr != nil {
			return 0, derr
		}
		f.last = deviceEnded(d.Status)
	}
}

// Close implements io.Closer.
func (f *follower) Close() error {
	if f.body != nil {
		return f.body.Close()
	}
	return nil
}

// deviceEnded reports whether a device status is final.
func deviceEnded(status string) bool {
	switch status {
	case api.DeviceSucceeded, api.DeviceFailed, api.DeviceTimedOut, api.DeviceCancelled, api.DeviceUndeliverable:
		return true
	}
	return false
}
