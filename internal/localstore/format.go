package localstore

import (
	"encoding/json"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// The file format. Records are JSON, in types of their own rather than the domain's: renaming
// a field of task.Task must not change what an existing file means, and a field added to the
// domain reaches the file only when it is added here. testdata/ holds one record of each kind
// as this version writes it; a test checks that they are written and read back unchanged.

// taskFile is the value of the tasks bucket.
type taskFile struct {
	// Seq is unique to this task record across the life of the file (bbolt's bucket sequence),
	// so a cached device list can never be taken for that of a later task with the same id.
	Seq  uint64     `json:"seq"`
	Task taskRecord `json:"task"`
}

type taskRecord struct {
	ID          string        `json:"id"`
	Owner       string        `json:"owner"`
	Status      string        `json:"status"`
	Version     int64         `json:"version"`
	CreatedAt   time.Time     `json:"createdAt"`
	UpdatedAt   time.Time     `json:"updatedAt"`
	StartedAt   *time.Time    `json:"startedAt,omitempty"`
	CompletedAt *time.Time    `json:"completedAt,omitempty"`
	ExpiresAt   time.Time     `json:"expiresAt,omitzero"`
	Request     requestRecord `json:"request"`
	Counts      countsRecord  `json:"counts"`
	CurrentStep string        `json:"currentStep"`
	Result      *resultRecord `json:"result,omitempty"`
	Published   bool          `json:"published,omitempty"`
	RelaunchOf  string        `json:"relaunchOf,omitempty"`
}

// requestRecord is a task's request. Its device ids are kept in the deviceids bucket, so they
// are null here.
type requestRecord struct {
	DeviceIDs      []string `json:"deviceIds"`
	ScriptURL      string   `json:"scriptUrl"`
	Args           []string `json:"args"`
	TimeoutSeconds int      `json:"timeoutSeconds"`
	MaxConcurrency string   `json:"maxConcurrency"`
	MaxErrors      string   `json:"maxErrors"`
	// Targets, IncludeOffline, DeliveryTimeoutSeconds and Notify were added in layout version
	// 2; a version 1 record has none of them and reads them as empty.
	Targets                []targetRecord `json:"targets,omitempty"`
	IncludeOffline         bool           `json:"includeOffline,omitempty"`
	DeliveryTimeoutSeconds int            `json:"deliveryTimeoutSeconds,omitempty"`
	Notify                 *notifyRecord  `json:"notify,omitempty"`
}

type targetRecord struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// notifyRecord is a task's webhook subscription.
type notifyRecord struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
	Links  string   `json:"links,omitempty"`
}

type countsRecord struct {
	Total         int `json:"total"`
	Pending       int `json:"pending"`
	Running       int `json:"running"`
	Succeeded     int `json:"succeeded"`
	Failed        int `json:"failed"`
	TimedOut      int `json:"timedOut"`
	Cancelled     int `json:"cancelled"`
	Undeliverable int `json:"undeliverable"`
}

type resultRecord struct {
	SucceededDevices []string `json:"succeededDevices"`
	FailedDevices    []string `json:"failedDevices"`
	CancelledDevices []string `json:"cancelledDevices"`
	Truncated        bool     `json:"truncated"`
	Reason           string   `json:"reason,omitempty"`
}

// deviceRecord is the value of the devices bucket.
type deviceRecord struct {
	TaskID          string     `json:"taskId"`
	ID              string     `json:"id"`
	Status          string     `json:"status"`
	ExitCode        *int       `json:"exitCode"`
	Stdout          string     `json:"stdout"`
	Stderr          string     `json:"stderr"`
	StdoutTruncated bool       `json:"stdoutTruncated"`
	StderrTruncated bool       `json:"stderrTruncated"`
	StartedAt       *time.Time `json:"startedAt,omitempty"`
	CompletedAt     *time.Time `json:"completedAt,omitempty"`
	Reason          string     `json:"reason,omitempty"`
	Ref             string     `json:"ref,omitempty"`
	// CancelRequestedAt was added after the first release; records without it read as nil.
	CancelRequestedAt *time.Time `json:"cancelRequestedAt,omitempty"`
}

// idemRecord is the value of the idem bucket.
type idemRecord struct {
	Owner       string    `json:"owner"`
	Key         string    `json:"key"`
	TaskID      string    `json:"taskId"`
	RequestHash string    `json:"requestHash"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// deliveryRecord is the value of the deliveries bucket: one attempt to deliver a webhook.
type deliveryRecord struct {
	TaskID        string     `json:"taskId"`
	EventID       string     `json:"eventId"`
	Type          string     `json:"type"`
	EventAt       time.Time  `json:"eventAt"`
	Attempt       int        `json:"attempt"`
	At            time.Time  `json:"at"`
	StatusCode    int        `json:"statusCode,omitempty"`
	Error         string     `json:"error,omitempty"`
	Outcome       string     `json:"outcome"`
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
}

// hookRecord is the value of the hooks bucket: a webhook event waiting in the outbox.
type hookRecord struct {
	ID             string    `json:"id"`
	Type           string    `json:"type"`
	TaskID         string    `json:"taskId"`
	URL            string    `json:"url"`
	At             time.Time `json:"at"`
	Links          string    `json:"links,omitempty"`
	Payload        []byte    `json:"payload,omitempty"`
	Attempt        int       `json:"attempt"`
	FirstAttemptAt time.Time `json:"firstAttemptAt,omitzero"`
	NextAt         time.Time `json:"nextAt"`
}

func encodeNotify(n *task.Notify) *notifyRecord {
	if n == nil {
		return nil
	}
	events := make([]string, len(n.Events))
	for i, e := range n.Events {
		events[i] = string(e)
	}
	return &notifyRecord{URL: n.URL, Events: events, Links: n.Links}
}

func decodeNotify(r *notifyRecord) *task.Notify {
	if r == nil {
		return nil
	}
	events := make([]task.WebhookType, len(r.Events))
	for i, e := range r.Events {
		events[i] = task.WebhookType(e)
	}
	return &task.Notify{URL: r.URL, Events: events, Links: r.Links}
}

func encodeDelivery(d *task.Delivery) ([]byte, error) {
	return json.Marshal(deliveryRecord{TaskID: d.TaskID, EventID: d.EventID, Type: string(d.Type), EventAt: d.EventAt,
		Attempt: d.Attempt, At: d.At, StatusCode: d.StatusCode, Error: d.Error, Outcome: string(d.Outcome),
		NextAttemptAt: d.NextAttemptAt})
}

func decodeDelivery(raw []byte) (*task.Delivery, error) {
	var r deliveryRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	return &task.Delivery{TaskID: r.TaskID, EventID: r.EventID, Type: task.WebhookType(r.Type), EventAt: r.EventAt,
		Attempt: r.Attempt, At: r.At, StatusCode: r.StatusCode, Error: r.Error, Outcome: task.DeliveryOutcome(r.Outcome),
		NextAttemptAt: r.NextAttemptAt}, nil
}

func encodeHook(j *task.WebhookJob) ([]byte, error) {
	return json.Marshal(hookRecord{ID: j.ID, Type: string(j.Type), TaskID: j.TaskID, URL: j.URL, At: j.At,
		Links: j.Links, Payload: j.Payload, Attempt: j.Attempt, FirstAttemptAt: j.FirstAttemptAt, NextAt: j.NextAt})
}

func decodeHook(raw []byte) (*task.WebhookJob, error) {
	var r hookRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	return &task.WebhookJob{ID: r.ID, Type: task.WebhookType(r.Type), TaskID: r.TaskID, URL: r.URL, At: r.At,
		Links: r.Links, Payload: r.Payload, Attempt: r.Attempt, FirstAttemptAt: r.FirstAttemptAt, NextAt: r.NextAt}, nil
}

// encodeTask encodes a task record, without its device ids.
func encodeTask(seq uint64, t *task.Task) ([]byte, error) {
	r := t.Request
	c := t.Counts
	rec := taskRecord{ID: t.ID, Owner: t.Owner, Status: string(t.Status), Version: t.Version,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, StartedAt: t.StartedAt, CompletedAt: t.CompletedAt,
		ExpiresAt: t.ExpiresAt, CurrentStep: t.CurrentStep, Published: t.Published, RelaunchOf: t.RelaunchOf,
		Request: requestRecord{ScriptURL: r.ScriptURL, Args: r.Args, TimeoutSeconds: r.TimeoutSeconds,
			MaxConcurrency: r.MaxConcurrency, MaxErrors: r.MaxErrors, IncludeOffline: r.IncludeOffline,
			DeliveryTimeoutSeconds: r.DeliveryTimeoutSeconds, Notify: encodeNotify(r.Notify)},
		Counts: countsRecord{Total: c.Total, Pending: c.Pending, Running: c.Running, Succeeded: c.Succeeded,
			Failed: c.Failed, TimedOut: c.TimedOut, Cancelled: c.Cancelled, Undeliverable: c.Undeliverable}}
	for _, tg := range r.Targets {
		rec.Request.Targets = append(rec.Request.Targets, targetRecord{Key: tg.Key, Values: tg.Values})
	}
	if res := t.Result; res != nil {
		rec.Result = &resultRecord{SucceededDevices: res.SucceededDevices, FailedDevices: res.FailedDevices,
			CancelledDevices: res.CancelledDevices, Truncated: res.Truncated, Reason: res.Reason}
	}
	return json.Marshal(taskFile{Seq: seq, Task: rec})
}

// decodeTask decodes a task record; its device ids are read apart.
func decodeTask(raw []byte) (uint64, *task.Task, error) {
	var f taskFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, nil, err
	}
	rec, r, c := f.Task, f.Task.Request, f.Task.Counts
	t := &task.Task{ID: rec.ID, Owner: rec.Owner, Status: task.Status(rec.Status), Version: rec.Version,
		CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt, StartedAt: rec.StartedAt, CompletedAt: rec.CompletedAt,
		ExpiresAt: rec.ExpiresAt, CurrentStep: rec.CurrentStep, Published: rec.Published, RelaunchOf: rec.RelaunchOf,
		Request: task.Request{ScriptURL: r.ScriptURL, Args: r.Args, TimeoutSeconds: r.TimeoutSeconds,
			MaxConcurrency: r.MaxConcurrency, MaxErrors: r.MaxErrors, IncludeOffline: r.IncludeOffline,
			DeliveryTimeoutSeconds: r.DeliveryTimeoutSeconds, Notify: decodeNotify(r.Notify)},
		Counts: task.Counts{Total: c.Total, Pending: c.Pending, Running: c.Running, Succeeded: c.Succeeded,
			Failed: c.Failed, TimedOut: c.TimedOut, Cancelled: c.Cancelled, Undeliverable: c.Undeliverable}}
	for _, tg := range r.Targets {
		t.Request.Targets = append(t.Request.Targets, task.Target{Key: tg.Key, Values: tg.Values})
	}
	if res := rec.Result; res != nil {
		t.Result = &task.Result{SucceededDevices: res.SucceededDevices, FailedDevices: res.FailedDevices,
			CancelledDevices: res.CancelledDevices, Truncated: res.Truncated, Reason: res.Reason}
	}
	return f.Seq, t, nil
}

func encodeDevice(d *task.Device) ([]byte, error) {
	return json.Marshal(deviceRecord{TaskID: d.TaskID, ID: d.ID, Status: string(d.Status), ExitCode: d.ExitCode,
		Stdout: d.Stdout, Stderr: d.Stderr, StdoutTruncated: d.StdoutTruncated, StderrTruncated: d.StderrTruncated,
		StartedAt: d.StartedAt, CompletedAt: d.CompletedAt, Reason: d.Reason, Ref: d.Ref,
		CancelRequestedAt: d.CancelRequestedAt})
}

func decodeDevice(raw []byte) (*task.Device, error) {
	var r deviceRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	return &task.Device{TaskID: r.TaskID, ID: r.ID, Status: task.DeviceStatus(r.Status), ExitCode: r.ExitCode,
		Stdout: r.Stdout, Stderr: r.Stderr, StdoutTruncated: r.StdoutTruncated, StderrTruncated: r.StderrTruncated,
		StartedAt: r.StartedAt, CompletedAt: r.CompletedAt, Reason: r.Reason, Ref: r.Ref,
		CancelRequestedAt: r.CancelRequestedAt}, nil
}

func encodeIdem(rec *task.IdempotencyRecord) ([]byte, error) {
	return json.Marshal(idemRecord{Owner: rec.Owner, Key: rec.Key, TaskID: rec.TaskID,
		RequestHash: rec.RequestHash, ExpiresAt: rec.ExpiresAt})
}

func decodeIdem(raw []byte) (*task.IdempotencyRecord, error) {
	var r idemRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	return &task.IdempotencyRecord{Owner: r.Owner, Key: r.Key, TaskID: r.TaskID, RequestHash: r.RequestHash,
		ExpiresAt: r.ExpiresAt}, nil
}
