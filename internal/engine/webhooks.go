package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// WebhookQueue holds webhook jobs until they are due: the embedded store's outbox under
// `fleetrun serve` (webhook.Loop), the webhook queue on AWS. A job it accepted is not lost. It
// may hand the same event over twice (an event the engine put again); DeliverWebhook makes each
// attempt of an event once.
type WebhookQueue interface {
	Put(ctx context.Context, job task.WebhookJob) error
}

// WebhookSender makes one attempt to post a webhook (webhook.Sender).
type WebhookSender interface {
	Send(ctx context.Context, job task.WebhookJob, payload []byte) task.AttemptResult
}

// PayloadFunc renders the body of a webhook event: the task as its event stream carries it,
// with the event's type, its links based on links.
type PayloadFunc func(t *task.Task, typ task.WebhookType, links string) ([]byte, error)

// Webhooks wires the engine's webhook events. The zero value sends none.
type Webhooks struct {
	// Queue receives the events of tasks that subscribed to them (notify); nil sends none.
	Queue WebhookQueue
	// Payload renders an event's body; it is required with Queue.
	Payload PayloadFunc
	// Sender makes the attempts of DeliverWebhook, in the process that delivers.
	Sender WebhookSender
	// Retry is how failed attempts are retried; task.DefaultWebhookRetry when zero.
	Retry task.WebhookRetry
	// Jitter returns a number in [0, 1) that spreads retries; math/rand's when nil.
	Jitter func() float64
}

// webhooks is the engine's webhook state: the configuration with its defaults, and the
// device.finished windows this process has already put, so that a task whose devices finish
// by the hundred puts one event per window, not one per report.
type webhooks struct {
	Webhooks
	mu      sync.Mutex
	windows map[string]time.Time
}

// maxWindows bounds the windows remembered; past it the memory starts again, which costs at
// most one repeated Put per task, which the queue or DeliverWebhook drops.
const maxWindows = 10000

func newWebhooks(w Webhooks) *webhooks {
	if w.Retry == (task.WebhookRetry{}) {
		w.Retry = task.DefaultWebhookRetry
	}
	if w.Jitter == nil {
		w.Jitter = rand.Float64
	}
	return &webhooks{Webhooks: w, windows: make(map[string]time.Time)}
}

// emitWebhook puts the event of type typ of t, when t's subscription asks for it. A
// task.started or task.finished event carries the task as it is now; a device.finished event
// is due once its window has passed and is rendered then (DeliverWebhook).
func (e *Engine) emitWebhook(ctx context.Context, t *task.Task, typ task.WebhookType) error {
	w := e.hooks
	n := t.Request.Notify
	if w.Queue == nil || !n.Wants(typ) {
		return nil
	}
	now := e.cfg.Now().UTC()
	window := now.Truncate(task.DeviceWebhookWindow)
	job := task.WebhookJob{ID: task.WebhookEventID(t.ID, typ, window), Type: typ, TaskID: t.ID, URL: n.URL,
		Links: n.Links, At: task.WebhookEventTime(t, typ, window), NextAt: now}
	if typ == task.WebhookDeviceFinished {
		job.NextAt = window.Add(task.DeviceWebhookWindow)
		if !w.newWindow(t.ID, window) {
			return nil
		}
	}
	if typ != task.WebhookDeviceFinished {
		payload, err := w.Payload(t, typ, n.Links)
		if err != nil {
			return fmt.Errorf("engine: render %s of %s: %w", typ, t.ID, err)
		}
		job.Payload = payload
	}
	if err := w.Queue.Put(ctx, job); err != nil {
		if typ == task.WebhookDeviceFinished {
			w.forgetWindow(t.ID, window)
		}
		return fmt.Errorf("engine: queue webhook %s: %w", job.ID, err)
	}
	return nil
}

// newWindow records that this process put task id's device.finished event of window at, and
// reports whether it had not already.
func (w *webhooks) newWindow(id string, at time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.windows[id]; ok && !last.Before(at) {
		return false
	}
	if len(w.windows) >= maxWindows {
		clear(w.windows)
	}
	w.windows[id] = at
	return true
}

// forgetWindow undoes newWindow after the event could not be put, so the next report tries
// again.
func (w *webhooks) forgetWindow(id string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.windows[id].Equal(at) {
		delete(w.windows, id)
	}
}

// endsDevices reports whether updates move a device into a terminal status.
func endsDevices(updates []task.DeviceUpdate) bool {
	return slices.ContainsFunc(updates, func(u task.DeviceUpdate) bool { return u.Status.Terminal() })
}

// DeliverWebhook makes the next attempt to deliver job, records it, and returns the job to
// try again and when (its NextAt), or nil when the event is done with: delivered, refused for
// good, out of retries, or its task gone. An error means the attempt could not be recorded;
// the caller tries the same job again later.
//
// Each attempt is claimed in the store before it is made (task.Store.RecordDelivery), so that
// two copies of one event never make the same attempt (see contended for what a copy that
// finds its attempt taken does). The task is never touched: a receiver that fails slows
// nothing but its own deliveries.
func (e *Engine) DeliverWebhook(ctx context.Context, job task.WebhookJob) (*task.WebhookJob, error) {
	w := e.hooks
	if w.Sender == nil || w.Payload == nil {
		return nil, errors.New("engine: this engine delivers no webhooks")
	}
	store := e.cfg.Store
	now := e.cfg.Now().UTC()
	n := job.Attempt + 1
	attrs := []any{"task_id", job.TaskID, "event_id", job.ID, "type", job.Type, "attempt", n}
	rec := task.Delivery{TaskID: job.TaskID, EventID: job.ID, Type: job.Type, EventAt: job.At, Attempt: n, At: now,
		Outcome: task.DeliverySending}
	err := store.RecordDelivery(ctx, rec)
	switch {
	case task.IsCode(err, task.CodeNotFound):
		e.log.InfoContext(ctx, "webhook dropped: its task has expired", attrs...)
		return nil, nil
	case task.IsCode(err, task.CodeConflict):
		return e.contended(ctx, job, n)
	case err != nil:
		return nil, fmt.Errorf("engine: claim webhook %s attempt %d: %w", job.ID, n, err)
	}
	if job.Payload == nil {
		t, err := store.GetTask(ctx, job.TaskID)
		if task.IsCode(err, task.CodeNotFound) {
			e.log.InfoContext(ctx, "webhook dropped: its task has expired", attrs...)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("engine: read %s for webhook %s: %w", job.TaskID, job.ID, err)
		}
		if job.Payload, err = w.Payload(t, job.Type, job.Links); err != nil {
			return nil, fmt.Errorf("engine: render webhook %s: %w", job.ID, err)
		}
	}
	if job.FirstAttemptAt.IsZero() {
		job.FirstAttemptAt = now
	}
	res := w.Sender.Send(ctx, job, job.Payload)
	outcome, next := w.Retry.Next(job.FirstAttemptAt, e.cfg.Now().UTC(), n, res, w.Jitter())
	rec.StatusCode, rec.Error, rec.Outcome = res.StatusCode, res.Err, outcome
	if outcome == task.DeliveryRetrying {
		rec.NextAttemptAt = &next
	}
	attrs = append(attrs, "status", res.StatusCode, "outcome", outcome, "err", res.Err)
	if err := store.RecordDelivery(context.WithoutCancel(ctx), rec); err != nil {
		if task.IsCode(err, task.CodeConflict) || task.IsCode(err, task.CodeNotFound) {
			// Another sender took the claim over, or the task expired meanwhile: the event is
			// theirs, or nobody's.
			e.log.WarnContext(ctx, "webhook attempt made but not recorded", append(attrs, "record_err", err)...)
			return nil, nil
		}
		return nil, fmt.Errorf("engine: record webhook %s attempt %d: %w", job.ID, n, err)
	}
	switch outcome {
	case task.DeliveryDelivered:
		e.log.InfoContext(ctx, "webhook delivered", attrs...)
		return nil, nil
	case task.DeliveryFailed:
		e.log.WarnContext(ctx, "webhook not delivered; no further attempt", attrs...)
		return nil, nil
	}
	e.log.InfoContext(ctx, "webhook attempt failed; it will be retried", append(attrs, "next_attempt_at", next)...)
	job.Attempt, job.NextAt = n, next
	return &job, nil
}

// contended decides about a job whose attempt n another copy of the event has claimed or
// made, from the event's latest recorded attempt:
//
//   - claimed and unsettled: the job waits until the claim is settled or abandoned;
//   - failed and to be retried: the job carries the retries on from there. It may be the only
//     copy left (the sender that recorded the attempt died before it put the job back), and
//     if it is not, the claims keep the copies to one attempt each until the event is done;
//   - delivered or given up: the job is a duplicate and is dropped.
func (e *Engine) contended(ctx context.Context, job task.WebhookJob, n int) (*task.WebhookJob, error) {
	page, err := e.cfg.Store.ListDeliveries(ctx, job.TaskID, task.DeliveryQuery{Limit: task.MaxPageSize,
		EventID: job.ID, EventAt: job.At})
	if err != nil {
		return nil, fmt.Errorf("engine: read the attempts of webhook %s: %w", job.ID, err)
	}
	if len(page.Deliveries) == 0 {
		return nil, fmt.Errorf("engine: attempt %d of webhook %s is taken but not listed", n, job.ID)
	}
	first, last := page.Deliveries[0], page.Deliveries[len(page.Deliveries)-1]
	switch {
	case last.Outcome == task.DeliverySending:
		job.NextAt = last.At.Add(task.DeliveryClaimTimeout)
		return &job, nil
	case last.Outcome == task.DeliveryRetrying && last.NextAttemptAt != nil:
		job.Attempt, job.NextAt = last.Attempt, *last.NextAttemptAt
		if first.Attempt == 1 {
			job.FirstAttemptAt = first.At
		}
		return &job, nil
	}
	e.log.DebugContext(ctx, "webhook copy dropped: the event is done with",
		"task_id", job.TaskID, "event_id", job.ID, "attempt", n, "outcome", last.Outcome)
	return nil, nil
}

// Deliveries returns a page of the recorded webhook attempts of task id, which caller must see.
func (e *Engine) Deliveries(ctx context.Context, caller task.Caller, id string, q task.DeliveryQuery) (*task.DeliveryPage, error) {
	if _, err := e.Get(ctx, caller, id); err != nil {
		return nil, err
	}
	q.Limit = task.PageSize(q.Limit)
	return e.cfg.Store.ListDeliveries(ctx, id, q)
}
