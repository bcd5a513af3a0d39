// Package api holds fleetrun's HTTP wire representations: what the server writes and what the
// client reads. openapi.yaml describes the same shapes; a test keeps the two in step.
package api

import (
	"encoding/json"
	"time"
)

// Task statuses as they appear on the wire.
const (
	StatusPending    = "pending"
	StatusRunning    = "running"
	StatusCancelling = "cancelling"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusTimedOut   = "timed_out"
	StatusCancelled  = "cancelled"
)

// Device statuses as they appear on the wire.
const (
	DevicePending       = "pending"
	DeviceRunning       = "running"
	DeviceSucceeded     = "succeeded"
	DeviceFailed        = "failed"
	DeviceTimedOut      = "timed_out"
	DeviceCancelled     = "cancelled"
	DeviceUndeliverable = "undeliverable"
)

// Terminal reports whether a task status is final.
func Terminal(status string) bool {
	switch status {
	case StatusCompleted, StatusFailed, StatusTimedOut, StatusCancelled:
		return true
	}
	return false
}

// SubmitRequest is the body of POST /tasks.
type SubmitRequest struct {
	// DeviceIDs names the devices; Targets selects them by tag instead (one or the other).
	DeviceIDs []string `json:"deviceIds,omitempty"`
	Targets   []Target `json:"targets,omitempty"`
	// IncludeOffline asks targets to select offline devices too (on AWS; every local device
	// is online).
	IncludeOffline bool     `json:"includeOffline,omitempty"`
	ScriptURL      string   `json:"scriptUrl"`
	Args           []string `json:"args,omitempty"`
	TimeoutSeconds int      `json:"timeoutSeconds,omitempty"`
	// DeliveryTimeoutSeconds bounds how long a device may take to pick the task up (on AWS,
	// SSM's delivery timeout); it has no effect on the local runner.
	DeliveryTimeoutSeconds int    `json:"deliveryTimeoutSeconds,omitempty"`
	MaxConcurrency         string `json:"maxConcurrency,omitempty"`
	MaxErrors              string `json:"maxErrors,omitempty"`
	// Notify asks for the task's webhook events to be posted to a URL.
	Notify *Notify `json:"notify,omitempty"`
}

// Notify is a task's webhook subscription: the URL each event is posted to, and which events
// (WebhookTaskFinished when none are named).
type Notify struct {
	URL    string   `json:"url"`
	Events []string `json:"events,omitempty"`
}

// Webhook event types, the "type" of a webhook's body.
const (
	WebhookTaskStarted    = "task.started"
	WebhookTaskFinished   = "task.finished"
	WebhookDeviceFinished = "device.finished"
)

// WebhookEvent is the body of a webhook request: the task as its event stream carries it, with
// the event's type.
type WebhookEvent struct {
	Type string `json:"type"`
	Task
}

// Delivery is one attempt to deliver a webhook event, as GET /tasks/{id}/deliveries lists it.
type Delivery struct {
	// EventID is the event's webhook-id header, the same on every attempt.
	EventID string    `json:"eventId"`
	Type    string    `json:"type"`
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	// StatusCode is the receiver's answer, null when there was none.
	StatusCode *int `json:"statusCode"`
	// Error says why the attempt failed when the status code alone does not.
	Error string `json:"error,omitempty"`
	// Outcome is sending, delivered, retrying or failed.
	Outcome string `json:"outcome"`
	// NextAttemptAt is when the event is tried again, null unless the outcome is retrying.
	NextAttemptAt *time.Time `json:"nextAttemptAt"`
}

// DeliveryList is a page of GET /tasks/{id}/deliveries; Next is the URL of the next page,
// absent on the last.
type DeliveryList struct {
	Items []Delivery `json:"items"`
	Next  string     `json:"next,omitempty"`
}

// Target selects devices by a tag: Key is "tag:<name>", and a device matches with any of
// Values. A submit's targets are ANDed.
type Target struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// InventoryDevice is one device of GET /devices: a managed node on AWS, an entry of the
// inventory file locally.
type InventoryDevice struct {
	ID         string            `json:"id"`
	Name       string            `json:"name,omitempty"`
	Platform   string            `json:"platform,omitempty"`
	PingStatus string            `json:"pingStatus"`
	Tags       map[string]string `json:"tags"`
}

// InventoryList is a page of GET /devices; Next is the URL of the next page, absent on the
// last.
type InventoryList struct {
	Items []InventoryDevice `json:"items"`
	Next  string            `json:"next,omitempty"`
}

// RelaunchRequest is the body of POST /tasks/{id}/relaunch. Devices is "failed" (every device
// that did not succeed), "all", or an array of the task's device ids; each other field, when
// present, replaces the original task's.
type RelaunchRequest struct {
	Devices                json.RawMessage `json:"devices"`
	Args                   *[]string       `json:"args,omitempty"`
	TimeoutSeconds         *int            `json:"timeoutSeconds,omitempty"`
	DeliveryTimeoutSeconds *int            `json:"deliveryTimeoutSeconds,omitempty"`
	MaxConcurrency         *string         `json:"maxConcurrency,omitempty"`
	MaxErrors              *string         `json:"maxErrors,omitempty"`
}

// Relaunch selections of RelaunchRequest.Devices.
const (
	RelaunchFailed = "failed"
	RelaunchAll    = "all"
)

// TaskRef names another task: its id and its URL.
type TaskRef struct {
	ID   string `json:"id"`
	Link string `json:"link"`
}

// Task is a task as GET /tasks/{id} returns it.
type Task struct {
	ID          string     `json:"id"`
	Status      string     `json:"status"`
	Version     int64      `json:"version"`
	CreatedAt   time.Time  `json:"createdAt"`
	StartedAt   *time.Time `json:"startedAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	CompletedAt *time.Time `json:"completedAt"`
	// EstimatedCompletionAt is when a running task is expected to finish, extrapolated from the
	// devices finished so far; nil until one has, and whenever the task is not running.
	EstimatedCompletionAt *time.Time  `json:"estimatedCompletionAt"`
	Request               TaskRequest `json:"request"`
	Progress              Progress    `json:"progress"`
	Result                *Result     `json:"result"`
	// RelaunchOf names the finished task this one relaunched; absent on a task submitted
	// afresh.
	RelaunchOf *TaskRef  `json:"relaunchOf,omitempty"`
	Links      TaskLinks `json:"links"`
}

// TaskRequest is what was asked for, without the device list (see the devices link).
type TaskRequest struct {
	ScriptURL   string `json:"scriptUrl"`
	DeviceCount int    `json:"deviceCount"`
	// Targets are the tag targets the devices were resolved from at submit, absent when the
	// caller named them; DeviceCount is how many they resolved to.
	Targets        []Target `json:"targets,omitempty"`
	IncludeOffline bool     `json:"includeOffline,omitempty"`
	Args           []string `json:"args"`
	TimeoutSeconds int      `json:"timeoutSeconds"`
	// DeliveryTimeoutSeconds is 0 in tasks stored before the field existed.
	DeliveryTimeoutSeconds int     `json:"deliveryTimeoutSeconds"`
	MaxConcurrency         string  `json:"maxConcurrency"`
	MaxErrors              string  `json:"maxErrors"`
	Notify                 *Notify `json:"notify,omitempty"`
}

// Progress tells how far a task has got.
type Progress struct {
	// Percentage is the share of devices in a terminal state, 0 to 100.
	Percentage  int          `json:"percentage"`
	CurrentStep string       `json:"currentStep"`
	Devices     DeviceCounts `json:"devices"`
}

// DeviceCounts counts a task's devices by status.
type DeviceCounts struct {
	Total         int `json:"total"`
	Pending       int `json:"pending"`
	Running       int `json:"running"`
	Succeeded     int `json:"succeeded"`
	Failed        int `json:"failed"`
	TimedOut      int `json:"timedOut"`
	Cancelled     int `json:"cancelled"`
	Undeliverable int `json:"undeliverable"`
}

// Result is a finished task's outcome. Each device list holds at most 1,000 ids; Truncated
// says one was cut, and the links list every device.
type Result struct {
	Status           string       `json:"status"`
	SucceededDevices []string     `json:"succeededDevices"`
	FailedDevices    []string     `json:"failedDevices"`
	CancelledDevices []string     `json:"cancelledDevices"`
	Truncated        bool         `json:"truncated"`
	Reason           string       `json:"reason,omitempty"`
	Devices          DeviceCounts `json:"devices"`
	Links            ResultLinks  `json:"links"`
}

// ResultLinks point at the full device lists and at where output lives.
type ResultLinks struct {
	Succeeded string `json:"succeeded"`
	Failed    string `json:"failed"`
	// Output is a URI template for one device's full output: replace {deviceId}. It is empty
	// where the deployment keeps no output beyond the devices' inline copies.
	Output string `json:"output,omitempty"`
}

// TaskLinks are the task's related resources.
type TaskLinks struct {
	Self    string `json:"self"`
	Devices string `json:"devices"`
	Result  string `json:"result"`
	Events  string `json:"events"`
	// Relaunches lists the tasks relaunched from this one (GET /tasks?relaunchOf=); present
	// once the task has finished, when it can be relaunched.
	Relaunches string `json:"relaunches,omitempty"`
	// Relaunch is where to POST a relaunch of this task (POST /tasks/{id}/relaunch); present
	// once the task has finished.
	Relaunch string `json:"relaunch,omitempty"`
	// Deliveries lists the attempts to deliver the task's webhooks; only with notify.
	Deliveries string `json:"deliveries,omitempty"`
}

// Device is one device of a task as GET /tasks/{id}/devices returns it.
type Device struct {
	ID              string     `json:"id"`
	Status          string     `json:"status"`
	ExitCode        *int       `json:"exitCode"`
	Stdout          string     `json:"stdout"`
	Stderr          string     `json:"stderr"`
	StdoutTruncated bool       `json:"stdoutTruncated"`
	StderrTruncated bool       `json:"stderrTruncated"`
	StartedAt       *time.Time `json:"startedAt"`
	CompletedAt     *time.Time `json:"completedAt"`
	// CancelRequestedAt is when a caller cancelled this device alone, absent if nobody did; a
	// running device so marked is being stopped.
	CancelRequestedAt *time.Time  `json:"cancelRequestedAt,omitempty"`
	Reason            string      `json:"reason,omitempty"`
	Links             DeviceLinks `json:"links"`
}

// DeviceLinks are a device's related resources.
type DeviceLinks struct {
	Self string `json:"self"`
	// Cancel is where to DELETE to cancel this device alone (its own URL), present only while
	// it can be: pending, or running and not already being stopped.
	Cancel string `json:"cancel,omitempty"`
	// Output is the device's full output, empty where it cannot be served: the deployment
	// keeps none, or the device has not started.
	Output string `json:"output,omitempty"`
}

// TaskList is a page of GET /tasks; Next is the URL of the next page, absent on the last.
type TaskList struct {
	Items []Task `json:"items"`
	Next  string `json:"next,omitempty"`
}

// DeviceList is a page of GET /tasks/{id}/devices; Next is the URL of the next page, absent on
// the last.
type DeviceList struct {
	Items []Device `json:"items"`
	Next  string   `json:"next,omitempty"`
}

// Problem is an RFC 9457 problem details body (application/problem+json).
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors lists the bad fields of a validation problem.
	Errors []FieldError `json:"errors,omitempty"`
	// TaskStatus is the task's current status, on conflicts (cancel of a finished task, result
	// of an unfinished one).
	TaskStatus string `json:"taskStatus,omitempty"`
	// DeviceStatus is the device's current status, on conflicts about one device (cancel of
	// a device that has ended).
	DeviceStatus string `json:"deviceStatus,omitempty"`
	// RequestID repeats the X-Request-Id response header.
	RequestID string `json:"requestId,omitempty"`
}

// FieldError is one bad field, named by its JSON pointer (RFC 6901) into the request body, or
// "/name" for a query parameter.
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Headers and media types of the contract.
const (
	HeaderRequestID      = "X-Request-Id"
	HeaderIdempotencyKey = "Idempotency-Key"
	MediaJSON            = "application/json"
	MediaProblem         = "application/problem+json"
	MediaEventStream     = "text/event-stream"
	// MaxWaitSeconds caps Prefer: wait=N so a long-poll fits API Gateway's 30 s limit.
	MaxWaitSeconds = 20
	// MaxIdempotencyKeyLength bounds the Idempotency-Key header.
	MaxIdempotencyKeyLength = 255
)

// Problem types: stable URNs, one per kind of problem.
const (
	ProblemValidation          = "urn:fleetrun:problem:validation"
	ProblemMalformed           = "urn:fleetrun:problem:malformed-request"
	ProblemNotFound            = "urn:fleetrun:problem:not-found"
	ProblemConflict            = "urn:fleetrun:problem:conflict"
	ProblemNotFinished         = "urn:fleetrun:problem:task-not-finished"
	ProblemIdempotencyMismatch = "urn:fleetrun:problem:idempotency-key-reused"
	ProblemInProgress          = "urn:fleetrun:problem:request-in-progress"
	ProblemUnsupportedMedia    = "urn:fleetrun:problem:unsupported-media-type"
	ProblemTooLarge            = "urn:fleetrun:problem:request-too-large"
	ProblemTimeout             = "urn:fleetrun:problem:request-timeout"
	ProblemUnauthorized        = "urn:fleetrun:problem:unauthorized"
	ProblemMethodNotAllowed    = "urn:fleetrun:problem:method-not-allowed"
	ProblemUnavailable         = "urn:fleetrun:problem:unavailable"
	ProblemInternal            = "urn:fleetrun:problem:internal"
	// ProblemForbidden and ProblemThrottled are answered on AWS by API Gateway itself (its
	// gateway responses): a signed caller that IAM does not allow to invoke the API, and a
	// caller past the stage's throttling.
	ProblemForbidden = "urn:fleetrun:problem:forbidden"
	ProblemThrottled = "urn:fleetrun:problem:throttled"
)
