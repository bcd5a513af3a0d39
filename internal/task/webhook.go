package task

import (
	"slices"
	"strconv"
	"time"
)

// WebhookType is a kind of event a task's notify subscription can ask to be called about.
type WebhookType string

const (
	// WebhookTaskStarted is sent once, when the task is dispatched and starts running.
	WebhookTaskStarted WebhookType = "task.started"
	// WebhookTaskFinished is sent once, when the task reaches a terminal status, whichever.
	WebhookTaskFinished WebhookType = "task.finished"
	// WebhookDeviceFinished is sent when devices of the task reach a terminal status,
	// coalesced to at most one event per DeviceWebhookWindow per task: the event of a window
	// carries the task as it is once the window has passed, so it counts every device that
	// finished within it.
	WebhookDeviceFinished WebhookType = "device.finished"
)

// WebhookTypes lists every webhook event type.
func WebhookTypes() []WebhookType {
	return []WebhookType{WebhookTaskStarted, WebhookTaskFinished, WebhookDeviceFinished}
}

// DefaultWebhookTypes are the events of a notify subscription that names none.
func DefaultWebhookTypes() []WebhookType { return []WebhookType{WebhookTaskFinished} }

// Valid reports whether w is one of the known webhook event types.
func (w WebhookType) Valid() bool { return slices.Contains(WebhookTypes(), w) }

// String implements fmt.Stringer.
func (w WebhookType) String() string { return string(w) }

// DeviceWebhookWindow is the window device.finished events are coalesced over: a task gets at
// most one such event per window.
const DeviceWebhookWindow = time.Second

// MaxWebhookURLLength bounds notify.url.
const MaxWebhookURLLength = 2048

// Notify is a task's webhook subscription: the URL to post each event to, and which events.
type Notify struct {
	URL    string        `json:"url"`
	Events []WebhookType `json:"events"`
	// Links is the base of the links in the events' payloads: the URL the caller submitted the
	// task through, so that a payload's links point where the caller's own calls go.
	Links string `json:"links,omitempty"`
}

// Wants reports whether n subscribes to events of type typ; a nil n subscribes to none.
func (n *Notify) Wants(typ WebhookType) bool {
	return n != nil && slices.Contains(n.Events, typ)
}

// NotifyDraft is the notify member of a submitted request as the caller sent it. Events is nil
// when the caller left it out, and then gets DefaultWebhookTypes.
type NotifyDraft struct {
	URL    string
	Events []string
}

// WebhookEventID is the id of the event of type typ of task taskID: the webhook-id header of
// every attempt to deliver it, the same on every attempt and in both homes, so that a receiver
// can drop a repeated delivery by it. window is the start of a device.finished event's window
// and is ignored for the others. The id has no "." (the signature joins id, time and body with
// dots) and no ":". A window's id sorts after the task's started one, so that the two, when
// they share a time (WebhookEventTime), are listed in the order they happened.
func WebhookEventID(taskID string, typ WebhookType, window time.Time) string {
	switch typ {
	case WebhookTaskStarted:
		return taskID + "_started"
	case WebhookTaskFinished:
		return taskID + "_finished"
	}
	return taskID + "_window_" + strconv.FormatInt(window.Unix(), 10)
}

// WebhookEventTime is the time of t's event of type typ, by which delivery records are listed;
// window is the start of a device.finished event's window. It depends on the event alone, so
// that every copy of an event has the same one: the task's start, its end, or the window's
// start, but never before the task's start (a window opens on the second, the task started
// within it).
func WebhookEventTime(t *Task, typ WebhookType, window time.Time) time.Time {
	var at time.Time
	switch typ {
	case WebhookTaskStarted:
		if t.StartedAt != nil {
			at = *t.StartedAt
		}
	case WebhookTaskFinished:
		if t.CompletedAt != nil {
			at = *t.CompletedAt
		}
	default:
		at = window
		if t.StartedAt != nil && t.StartedAt.After(at) {
			at = *t.StartedAt
		}
	}
	return at.UTC()
}

// WebhookJob is one webhook event on its way to its receiver: what to post, where, and how far
// its delivery has got. The embedded store keeps jobs in its outbox; on AWS a job is the body
// of a message on the webhook queue.
type WebhookJob struct {
	// ID is the event's id (WebhookEventID).
	ID     string      `json:"id"`
	Type   WebhookType `json:"type"`
	TaskID string      `json:"taskId"`
	URL    string      `json:"url"`
	// At is when the event happened: the dispatch, the end, or the start of a device.finished
	// window. Deliveries are listed in the order of their events' times.
	At time.Time `json:"at"`
	// Links is the base of the payload's links (Notify.Links).
	Links string `json:"links,omitempty"`
	// Payload is the body every attempt posts. It is nil until the first attempt for a
	// device.finished event, which carries the task as it is once its window has passed.
	Payload []byte `json:"payload,omitempty"`
	// Attempt counts the attempts made so far; FirstAttemptAt is when the first was made.
	Attempt        int       `json:"attempt"`
	FirstAttemptAt time.Time `json:"firstAttemptAt,omitzero"`
	// NextAt is when the next attempt is due.
	NextAt time.Time `json:"nextAt"`
}

// DeliveryOutcome is what became of one attempt to deliver a webhook.
type DeliveryOutcome string

const (
	// DeliverySending means the attempt is being made: its sender claimed it and has not yet
	// recorded how it went. A claim older than DeliveryClaimTimeout was abandoned (its sender
	// died) and may be taken over.
	DeliverySending DeliveryOutcome = "sending"
	// DeliveryDelivered means the receiver answered 2xx in time: the event is delivered.
	DeliveryDelivered DeliveryOutcome = "delivered"
	// DeliveryRetrying means the attempt failed in a way worth trying again (a timeout, no
	// connection, 5xx or 429): another attempt is due at the record's NextAttemptAt.
	DeliveryRetrying DeliveryOutcome = "retrying"
	// DeliveryFailed means the attempt failed for good: the receiver refused the event (a 4xx
	// other than 429, a redirect), the URL is no longer one fleetrun may call, or retries ran
	// out after WebhookRetry.Window.
	DeliveryFailed DeliveryOutcome = "failed"
)

// DeliveryClaimTimeout is how long a claim on an attempt (DeliverySending) holds. An attempt
// takes at most WebhookTimeout, so a claim this old belongs to a sender that died, and another
// may make the attempt instead.
const DeliveryClaimTimeout = time.Minute

// WebhookTimeout bounds one attempt: a receiver that has not answered 2xx by then has failed
// it.
const WebhookTimeout = 10 * time.Second

// Delivery records one attempt to deliver a webhook event of a task. Every attempt is recorded,
// and the records expire with their task.
type Delivery struct {
	TaskID  string
	EventID string
	Type    WebhookType
	// EventAt is the event's time (WebhookJob.At); records are listed by it, then by event id
	// and attempt.
	EventAt time.Time
	// Attempt is 1 for the first attempt to deliver the event.
	Attempt int
	// At is when the attempt was made.
	At time.Time
	// StatusCode is the receiver's answer, 0 when there was none.
	StatusCode int
	// Error says why the attempt failed when the status code alone does not (a timeout, a
	// refused connection, an address fleetrun may not call).
	Error   string
	Outcome DeliveryOutcome
	// NextAttemptAt is when the event is tried again, nil unless Outcome is DeliveryRetrying.
	NextAttemptAt *time.Time
}

// DeliveryQuery selects a page of a task's delivery records.
type DeliveryQuery struct {
	Limit  int
	Cursor string
	// EventID and EventAt, when EventID is set, select the attempts of that one event.
	EventID string
	EventAt time.Time
}

// DeliveryPage is one page of delivery records; Next is the opaque cursor of the next page,
// empty on the last.
type DeliveryPage struct {
	Deliveries []*Delivery
	Next       string
}

// AttemptResult is what one attempt to post a webhook came to.
type AttemptResult struct {
	// StatusCode is the receiver's answer, 0 when there was none.
	StatusCode int
	// Err says why there was no answer (a timeout, a refused connection), or why the answer was
	// not taken.
	Err string
	// Refused is set when fleetrun refused to make the call at all (the URL now resolves to an
	// address it may not call): trying again cannot help.
	Refused bool
	// RetryAfter is the receiver's Retry-After, zero when it sent none.
	RetryAfter time.Duration
}

// Delivered reports whether the receiver took the event: it answered 2xx.
func (r AttemptResult) Delivered() bool { return r.StatusCode >= 200 && r.StatusCode < 300 }

// Retryable reports whether an attempt that did not deliver the event is worth making again:
// a timeout or a lost connection (no answer), a 5xx or a 429. Any other answer (a 4xx, a
// redirect, which is not followed) says the receiver will not take the event as it is.
func (r AttemptResult) Retryable() bool {
	switch {
	case r.Delivered(), r.Refused:
		return false
	case r.StatusCode == 0:
		return true
	}
	return r.StatusCode >= 500 || r.StatusCode == 429
}

// WebhookRetry is how the delivery of a webhook event is retried: exponential backoff with
// jitter from First up to Max between attempts, never sooner than a Retry-After the receiver
// asked for (up to MaxRetryAfter), for as long as the first attempt is less than Window ago.
// The last attempt is therefore at least Window after the first.
type WebhookRetry struct {
	First, Max    time.Duration
	Window        time.Duration
	MaxRetryAfter time.Duration
}

// DefaultWebhookRetry retries for 24 hours: pauses of 5 s, 10 s, 20 s, … up to an hour, each
// jittered into its second half, some forty attempts in all.
var DefaultWebhookRetry = WebhookRetry{First: 5 * time.Second, Max: time.Hour, Window: 24 * time.Hour,
	MaxRetryAfter: 6 * time.Hour}

// Backoff is the pause after attempt n (1 for the first) before jitter: First doubled n-1
// times, at most Max.
func (p WebhookRetry) Backoff(n int) time.Duration {
	d := p.First << min(max(n-1, 0), 30)
	if d <= 0 || d > p.Max {
		d = p.Max
	}
	return d
}

// Next decides what follows attempt n (1 for the first) of an event, made at now with result
// res, whose first attempt was made at first. It returns the outcome to record and, for
// DeliveryRetrying, when to try again. jitter, from [0, 1), spreads the retries of many events
// over the second half of each pause ("equal jitter"), so that a receiver coming back is not
// met by every retry at once.
func (p WebhookRetry) Next(first, now time.Time, n int, res AttemptResult, jitter float64) (DeliveryOutcome, time.Time) {
	switch {
	case res.Delivered():
		return DeliveryDelivered, time.Time{}
	case !res.Retryable() || now.Sub(first) >= p.Window:
		return DeliveryFailed, time.Time{}
	}
	d := p.Backoff(n)
	d = d/2 + time.Duration(jitter*float64(d/2))
	if ra := min(res.RetryAfter, p.MaxRetryAfter); ra > d {
		d = ra
	}
	return DeliveryRetrying, now.Add(d)
}
