package eventbridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// SchemaVersion is the version of Detail written by this code. A change that could break a
// consumer (a field removed, renamed or retyped) needs a new version; new fields may be added
// within a version, so consumers should ignore fields they do not know.
const SchemaVersion = 1

// Detail is the detail of a "Task Finished" event, the schema documented in docs/events.md. It
// is its own type, not task.Notification, so that a change inside the domain cannot change what
// consumers receive without this file changing too.
type Detail struct {
	// SchemaVersion is SchemaVersion at the time of writing; consumers check it first.
	SchemaVersion int `json:"schemaVersion"`
	// ID is "<taskId>:<status>", the same for every delivery of the same terminal transition,
	// so a consumer can drop duplicates by it. EventBridge's own event id differs per PutEvents.
	ID string `json:"id"`
	// TaskID is the task's id, as in GET /tasks/{id}.
	TaskID string `json:"taskId"`
	// Owner is the caller who submitted the task (an IAM ARN, or a JWT subject).
	Owner string `json:"owner"`
	// Status is the terminal status: completed, failed, timed_out or cancelled.
	Status task.Status `json:"status"`
	// Version is the task's version after the terminal write, its ETag.
	Version int64 `json:"version"`
	// CreatedAt is when the task was submitted.
	CreatedAt time.Time `json:"createdAt"`
	// CompletedAt is when the task reached its terminal status; it is also the event's time.
	CompletedAt time.Time `json:"completedAt"`
	// ScriptURL is the script the task ran.
	ScriptURL string `json:"scriptUrl"`
	// Counts are exact: how many devices ended in each status.
	Counts Counts `json:"counts"`
	// Result names the devices by outcome, possibly in part; Result.Truncated says so.
	Result Result `json:"result"`
}

// Counts is how many devices of the task are in each status. In a terminal task pending and
// running are 0 and the others add up to total.
type Counts struct {
	Total         int `json:"total"`
	Pending       int `json:"pending"`
	Running       int `json:"running"`
	Succeeded     int `json:"succeeded"`
	Failed        int `json:"failed"`
	TimedOut      int `json:"timedOut"`
	Cancelled     int `json:"cancelled"`
	Undeliverable int `json:"undeliverable"`
}

// Result summarises the outcome. The lists are never null. They hold at most
// task.ResultListCap ids each, and fewer when the event would otherwise exceed EventBridge's
// size limit; Truncated is then true and the devices endpoint has the full lists.
type Result struct {
	// SucceededDevices are ids of devices whose script exited 0.
	SucceededDevices []string `json:"succeededDevices"`
	// FailedDevices are ids of devices that failed, timed out or were undeliverable.
	FailedDevices []string `json:"failedDevices"`
	// CancelledDevices are ids of devices stopped or never started.
	CancelledDevices []string `json:"cancelledDevices"`
	// Truncated is true when any list above is incomplete.
	Truncated bool `json:"truncated"`
	// Reason says, for a person, why the task failed, timed out or was cancelled; "" when it
	// completed.
	Reason string `json:"reason"`
}

// NewDetail maps a notification to the event schema.
func NewDetail(n task.Notification) Detail {
	d := Detail{
		SchemaVersion: SchemaVersion,
		ID:            n.ID,
		TaskID:        n.TaskID,
		Owner:         n.Owner,
		Status:        n.Status,
		Version:       n.Version,
		CreatedAt:     n.CreatedAt.UTC(),
		CompletedAt:   n.CompletedAt.UTC(),
		ScriptURL:     n.ScriptURL,
		Counts: Counts{
			Total: n.Counts.Total, Pending: n.Counts.Pending, Running: n.Counts.Running,
			Succeeded: n.Counts.Succeeded, Failed: n.Counts.Failed, TimedOut: n.Counts.TimedOut,
			Cancelled: n.Counts.Cancelled, Undeliverable: n.Counts.Undeliverable,
		},
		Result: Result{SucceededDevices: []string{}, FailedDevices: []string{}, CancelledDevices: []string{}},
	}
	if d.ID == "" {
		d.ID = task.NotificationID(n.TaskID, n.Status)
	}
	if r := n.Result; r != nil {
		d.Result.SucceededDevices = capped(r.SucceededDevices, task.ResultListCap, &d.Result.Truncated)
		d.Result.FailedDevices = capped(r.FailedDevices, task.ResultListCap, &d.Result.Truncated)
		d.Result.CancelledDevices = capped(r.CancelledDevices, task.ResultListCap, &d.Result.Truncated)
		d.Result.Truncated = d.Result.Truncated || r.Truncated
		d.Result.Reason = r.Reason
	}
	return d
}

// capped returns the first n ids of list (never nil) and sets *truncated when it cut any.
func capped(list []string, n int, truncated *bool) []string {
	if len(list) > n {
		*truncated = true
		list = list[:n]
	}
	return append([]string{}, list...)
}

// encode writes d as compact JSON without HTML escaping, so ids and URLs read as they are.
func encode(d Detail) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return "", fmt.Errorf("eventbridge: encode detail of %s: %w", d.ID, err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// fit returns the encoded detail, with its device lists cut to the longest common length at
// which overhead + the detail stays under limit bytes. It reports whether it cut anything.
func fit(d Detail, overhead, limit int) (string, bool, error) {
	s, err := encode(d)
	if err != nil || overhead+len(s) < limit {
		return s, false, err
	}
	longest := max(len(d.Result.SucceededDevices), len(d.Result.FailedDevices), len(d.Result.CancelledDevices))
	// Binary search for the largest per-list cap k in [0, longest) that fits.
	lo, hi := -1, longest // fits(lo) is unknown at -1 and taken as true; fits(hi) is false
	best := ""
	for hi-lo > 1 {
		k := (lo + hi) / 2
		s, err := encode(trimmed(d, k))
		if err != nil {
			return "", false, err
		}
		if overhead+len(s) < limit {
			lo, best = k, s
		} else {
			hi = k
		}
	}
	if lo < 0 {
		return "", false, fmt.Errorf("eventbridge: event %s exceeds %d bytes even without device ids", d.ID, limit)
	}
	return best, true, nil
}

// trimmed returns d with each device list cut to at most k ids and marked truncated.
func trimmed(d Detail, k int) Detail {
	d.Result.SucceededDevices = d.Result.SucceededDevices[:min(k, len(d.Result.SucceededDevices))]
	d.Result.FailedDevices = d.Result.FailedDevices[:min(k, len(d.Result.FailedDevices))]
	d.Result.CancelledDevices = d.Result.CancelledDevices[:min(k, len(d.Result.CancelledDevices))]
	d.Result.Truncated = true
	return d
}
