package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

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
// device ends (GET …/output?follow=true). Where the server can only answer once the device has
// ended (API Gateway's HTTP API) and the device is still working when its request's time is
// up, FollowOutput asks again after the server's Retry-After, until ctx ends. The caller
// closes the reader.
func (c *Client) FollowOutput(ctx context.Context, id, deviceID string, stream Stream) (io.ReadCloser, error) {
	if stream == "" {
		stream = Stdout
	}
	for {
		resp, err := c.do(ctx, call{method: http.MethodGet, path: taskPath(id, "devices", deviceID, "output"),
			query: url.Values{"stream": {string(stream)}, "follow": {"true"}}, retry: true,
			header: http.Header{"Accept": {"text/plain, " + api.MediaProblem}}})
		var e *Error
		if !errors.As(err, &e) || !IsNotFinished(err) {
			if err != nil {
				return nil, err
			}
			return resp.Body, nil
		}
		if err := sleepCtx(ctx, c.capPause(max(e.RetryAfter, c.retry.BaseDelay))); err != nil {
			return nil, fmt.Errorf("client: follow output of %s on %s: %w", deviceID, id, err)
		}
	}
}
