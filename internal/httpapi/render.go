package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fleetrun/fleetrun/api"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// links builds the absolute URLs of one response from its request's base. withOutput says
// whether the deployment serves full output, so that output links appear only where they lead
// somewhere.
type links struct {
	base       string
	withOutput bool
}

func (h *handler) links(r *http.Request) links {
	return links{base: trimSlash(h.cfg.BaseURL(r)), withOutput: h.cfg.Output != nil || h.cfg.OutputLinks}
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

func (l links) tasks() string { return l.base + "/tasks" }

func (l links) task(id string) string { return l.tasks() + "/" + url.PathEscape(id) }

func (l links) devices(id string) string { return l.task(id) + "/devices" }

func (l links) device(id, deviceID string) string {
	return l.devices(id) + "/" + url.PathEscape(deviceID)
}

// failedStatuses are the device statuses a result calls failed: those that count against
// maxErrors.
const failedStatuses = "failed,timed_out,undeliverable"

// renderTask turns a stored task into its wire form. The device list is left out (a task may
// have 10,000 devices); the devices link pages through it.
func (l links) renderTask(t *task.Task) api.Task {
	args := t.Request.Args
	if args == nil {
		args = []string{}
	}
	out := api.Task{
		ID:          t.ID,
		Status:      string(t.Status),
		Version:     t.Version,
		CreatedAt:   t.CreatedAt.UTC(),
		StartedAt:   utc(t.StartedAt),
		UpdatedAt:   t.UpdatedAt.UTC(),
		CompletedAt: utc(t.CompletedAt),
		// EstimatedCompletion depends on the stored task alone, so the ETag still covers it.
		EstimatedCompletionAt: t.EstimatedCompletion(),
		Request: api.TaskRequest{
			ScriptURL:              t.Request.ScriptURL,
			DeviceCount:            len(t.Request.DeviceIDs),
			Targets:                renderTargets(t.Request.Targets),
			IncludeOffline:         t.Request.IncludeOffline,
			Args:                   args,
			TimeoutSeconds:         t.Request.TimeoutSeconds,
			DeliveryTimeoutSeconds: t.Request.DeliveryTimeoutSeconds,
			MaxConcurrency:         t.Request.MaxConcurrency,
			MaxErrors:              t.Request.MaxErrors,
			Notify:                 renderNotify(t.Request.Notify),
		},
		Progress: api.Progress{
			Percentage:  t.Counts.Percentage(),
			CurrentStep: t.CurrentStep,
			Devices:     counts(t.Counts),
		},
		Links: api.TaskLinks{
			Self:    l.task(t.ID),
			Devices: l.devices(t.ID),
			Result:  l.task(t.ID) + "/result",
			Events:  l.task(t.ID) + "/events",
		},
	}
	if t.Request.Notify != nil {
		out.Links.Deliveries = l.task(t.ID) + "/deliveries"
	}
	if t.Status.Terminal() {
		out.Result = new(l.renderResult(t))
		out.Links.Relaunches = l.tasks() + "?relaunchOf=" + url.QueryEscape(t.ID)
		out.Links.Relaunch = l.task(t.ID) + "/relaunch"
	}
	if t.RelaunchOf != "" {
		out.RelaunchOf = &api.TaskRef{ID: t.RelaunchOf, Link: l.task(t.RelaunchOf)}
	}
	return out
}

func renderNotify(n *task.Notify) *api.Notify {
	if n == nil {
		return nil
	}
	events := make([]string, len(n.Events))
	for i, e := range n.Events {
		events[i] = string(e)
	}
	return &api.Notify{URL: n.URL, Events: events}
}

// WebhookPayload returns the engine's PayloadFunc in both homes: the body of a webhook event
// of type typ is the task as its event stream carries it, with the event's type, and links
// based on the URL the task was submitted through. servesOutput says, as Config.OutputLinks does,
// whether the deployment serves full output, and so whether output links appear.
func WebhookPayload(servesOutput bool) engine.PayloadFunc {
	return func(t *task.Task, typ task.WebhookType, base string) ([]byte, error) {
		l := links{base: trimSlash(base), withOutput: servesOutput}
		return json.Marshal(api.WebhookEvent{Type: string(typ), Task: l.renderTask(t)})
	}
}

// renderDelivery turns a delivery record into its wire form.
func renderDelivery(d *task.Delivery) api.Delivery {
	out := api.Delivery{EventID: d.EventID, Type: string(d.Type), Attempt: d.Attempt, At: d.At.UTC(),
		Error: d.Error, Outcome: string(d.Outcome), NextAttemptAt: utc(d.NextAttemptAt)}
	if d.StatusCode != 0 {
		out.StatusCode = new(d.StatusCode)
	}
	return out
}

// renderResult is a terminal task's result. The stored result's lists are capped; the links
// page through every device of each kind.
func (l links) renderResult(t *task.Task) api.Result {
	res := t.Result
	if res == nil {
		res = &task.Result{}
	}
	out := api.Result{
		Status:           string(t.Status),
		SucceededDevices: nonNil(res.SucceededDevices),
		FailedDevices:    nonNil(res.FailedDevices),
		CancelledDevices: nonNil(res.CancelledDevices),
		Truncated:        res.Truncated,
		Reason:           res.Reason,
		Devices:          counts(t.Counts),
		Links: api.ResultLinks{
			Succeeded: l.devices(t.ID) + "?status=" + string(task.DeviceSucceeded),
			Failed:    l.devices(t.ID) + "?status=" + failedStatuses,
		},
	}
	if l.withOutput {
		out.Links.Output = l.devices(t.ID) + "/{deviceId}/output"
	}
	return out
}

// renderDevice turns a stored device into its wire form.
func (l links) renderDevice(taskID string, d *task.Device) api.Device {
	return api.Device{
		ID:                d.ID,
		Status:            string(d.Status),
		ExitCode:          d.ExitCode,
		Stdout:            d.Stdout,
		Stderr:            d.Stderr,
		StdoutTruncated:   d.StdoutTruncated,
		StderrTruncated:   d.StderrTruncated,
		StartedAt:         utc(d.StartedAt),
		CompletedAt:       utc(d.CompletedAt),
		CancelRequestedAt: utc(d.CancelRequestedAt),
		Reason:            d.Reason,
		Links: api.DeviceLinks{Self: l.device(taskID, d.ID), Cancel: l.cancelLink(taskID, d),
			Output: l.outputLink(taskID, d)},
	}
}

// cancelLink is a device's cancel link while a caller may cancel it: it has not ended (a
// cancel of a cancelled device is idempotent, but offers nothing), the domain's table lets a
// cancel move it, and nobody has asked already (a running device being stopped).
func (l links) cancelLink(taskID string, d *task.Device) string {
	if _, err := d.Status.On(task.DeviceEventCancel); err != nil || d.Status.Terminal() || d.CancelRequestedAt != nil {
		return ""
	}
	return l.device(taskID, d.ID)
}

// outputLink is a device's output link, or "" where there is no output to serve: the deployment
// keeps none, or the device has not started (a device that started and wrote nothing has an
// empty output, which is served).
func (l links) outputLink(taskID string, d *task.Device) string {
	if !l.withOutput || d.Status == task.DevicePending {
		return ""
	}
	return l.device(taskID, d.ID) + "/output"
}

func renderTargets(targets []task.Target) []api.Target {
	if targets == nil {
		return nil
	}
	out := make([]api.Target, len(targets))
	for i, t := range targets {
		out[i] = api.Target{Key: t.Key, Values: t.Values}
	}
	return out
}

func counts(c task.Counts) api.DeviceCounts {
	return api.DeviceCounts{
		Total:         c.Total,
		Pending:       c.Pending,
		Running:       c.Running,
		Succeeded:     c.Succeeded,
		Failed:        c.Failed,
		TimedOut:      c.TimedOut,
		Cancelled:     c.Cancelled,
		Undeliverable: c.Undeliverable,
	}
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return new(t.UTC())
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// etag is a task's strong entity tag: its version, which rises with every write.
func etag(version int64) string {
	return `"` + strconv.FormatInt(version, 10) + `"`
}
