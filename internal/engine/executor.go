package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// ErrMalformed marks a queue message that can never be handled (bad JSON, unknown action or
// version, no task id). Consumers log it and let the queue's redrive policy move it aside
// instead of retrying it in code.
var ErrMalformed = errors.New("malformed message")

// ErrIncomplete is returned by Runner.Start when it stopped early on purpose (its context's
// deadline was near) after recording how far it got. The executor queues another dispatch at
// once, and the runner resumes where it left off.
var ErrIncomplete = errors.New("dispatch incomplete")

// Handle executes one queue message. It is idempotent: SQS delivers at least once and out of
// order, so every step re-reads the task and acts only through conditional writes. An error
// means "deliver again later".
func (e *Engine) Handle(ctx context.Context, m Message) error {
	if m.Version < MinMessageVersion || m.Version > MessageVersion || m.TaskID == "" {
		return fmt.Errorf("engine: message version %d task %q: %w", m.Version, m.TaskID, ErrMalformed)
	}
	t, err := e.cfg.Store.GetTask(ctx, m.TaskID)
	if task.IsCode(err, task.CodeNotFound) {
		e.log.WarnContext(ctx, "message for an unknown or expired task dropped", "task_id", m.TaskID, "action", m.Action)
		return nil
	}
	if err != nil {
		return err
	}
	if t.Status.Terminal() {
		// Nothing is left to do for a finished task but to make sure its notification went out.
		return e.ensurePublished(ctx, t)
	}
	switch m.Action {
	case ActionDispatch:
		return e.dispatch(ctx, t, m)
	case ActionPoll:
		return e.poll(ctx, t, m)
	case ActionCancel:
		return e.stop(ctx, t, m)
	case ActionStopDevices:
		return e.stopDevices(ctx, t, m.DeviceIDs)
	}
	return fmt.Errorf("engine: action %q: %w", m.Action, ErrMalformed)
}

// dispatch moves a pending task to running and starts it on its runner. A task that is
// already running (a redelivered dispatch, a resume after a restart, or the sweep re-driving
// it) is started again, which runners treat as a resume. Polling starts only if m still
// holds the task's lease (see sweep.go).
func (e *Engine) dispatch(ctx context.Context, t *task.Task, m Message) error {
	first := false // this call moved the task to running
	switch t.Status {
	case task.StatusPending:
		tr, err := task.Dispatch(t, e.cfg.Now().UTC())
		if err != nil {
			return err
		}
		tr.Step = stepRunning
		running, err := e.cfg.Store.Transition(ctx, tr)
		if task.IsCode(err, task.CodeConflict) {
			// Someone else moved it first (a cancel, or a duplicate dispatch): decide again.
			fresh, gerr := e.cfg.Store.GetTask(ctx, t.ID)
			if gerr != nil {
				return gerr
			}
			if fresh.Status == task.StatusPending {
				return fmt.Errorf("engine: dispatch %s: %w", t.ID, err)
			}
			return e.dispatch(ctx, fresh, m)
		}
		if err != nil {
			return err
		}
		e.log.InfoContext(ctx, "task dispatched", "task_id", t.ID)
		e.notify(running)
		t, first = running, true
		// The event goes out before any device starts; if it cannot be queued, the message is
		// handled again, and the resume below queues it then.
		if err := e.emitWebhook(ctx, t, task.WebhookTaskStarted); err != nil {
			return err
		}
	case task.StatusRunning:
		e.log.InfoContext(ctx, "task resumed", "task_id", t.ID)
		// Whether the first dispatch queued the task.started event is not known here; queuing
		// it again is harmless, as the outbox and DeliverWebhook make each attempt once.
		if err := e.emitWebhook(ctx, t, task.WebhookTaskStarted); err != nil {
			return err
		}
	case task.StatusCancelling:
		return e.stop(ctx, t, m)
	default:
		return nil // cancelled, or already finished: nothing to start
	}
	err := e.cfg.Runner.Start(ctx, t)
	if first && (err == nil || errors.Is(err, ErrIncomplete)) {
		// The runner has sent or started something: the dispatch latency is known.
		e.cfg.Metrics.TaskDispatched(ctx, since(t.CreatedAt, e.cfg.Now()))
	}
	if err != nil {
		if errors.Is(err, ErrIncomplete) {
			e.log.InfoContext(ctx, "dispatch continues in another message", "task_id", t.ID)
			return e.cfg.Queue.Send(context.WithoutCancel(ctx), Message{Version: MessageVersion, Action: ActionDispatch, TaskID: t.ID, Lease: m.Lease}, 0)
		}
		if task.IsCode(err, task.CodeInvalid) {
			_, ferr := e.fail(ctx, t, "the task could not start: "+errorMessage(err))
			return ferr
		}
		return fmt.Errorf("engine: start %s: %w", t.ID, err)
	}
	if _, ok := e.cfg.Runner.(PolledRunner); ok {
		lease, ok, err := e.keepLease(ctx, t, m)
		if err != nil || !ok {
			return err
		}
		return e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: ActionPoll, TaskID: t.ID, Lease: lease}, e.cfg.PollInterval)
	}
	// A resumed task may have nothing left to run: its last device finished just before the
	// process that was running it stopped, so no further report will come to finish it.
	fresh, err := e.cfg.Store.GetTask(ctx, t.ID)
	if err != nil {
		return err
	}
	_, err = e.finishIfDone(ctx, fresh)
	return err
}

// stepRunning is the step of a task whose devices are running, or waiting only for the
// task's own maxConcurrency.
const stepRunning = "running on devices"

// SetStep records what a running task is doing when its runner knows more than the status
// says, such as that its devices wait for a free slot on the server; an empty step restores
// stepRunning. It is a conditional write of the step alone: the status stays, and the version
// rises so that long-polls and event streams see the change. A task that is no longer running,
// or already has that step, is left as it is.
func (e *Engine) SetStep(ctx context.Context, taskID, step string) error {
	if step == "" {
		step = stepRunning
	}
	for attempt := 0; ; attempt++ {
		t, err := e.cfg.Store.GetTask(ctx, taskID)
		if err != nil {
			return err
		}
		if t.Status != task.StatusRunning || t.CurrentStep == step {
			return nil
		}
		tr, err := task.Step(t, step, e.cfg.Now().UTC())
		if err != nil {
			return err
		}
		t, err = e.cfg.Store.Transition(ctx, tr)
		if task.IsCode(err, task.CodeConflict) && attempt < 10 {
			continue // a device update moved the version on: look again
		}
		if err != nil {
			return fmt.Errorf("engine: set the step of %s: %w", taskID, err)
		}
		e.notify(t)
		return nil
	}
}

// poll asks a PolledRunner for progress, applies it, enforces the deadline, and schedules the
// next poll with backoff while the task is not finished and m holds its lease. A poll whose
// lease went to another message does nothing: that message's chain polls instead.
func (e *Engine) poll(ctx context.Context, t *task.Task, m Message) error {
	if t.Status.Terminal() || t.Status == task.StatusPending {
		return nil
	}
	if !e.holds(t, m) {
		e.log.InfoContext(ctx, "a poll whose lease went to another message ends its chain", "task_id", t.ID)
		return nil
	}
	if p, ok := e.cfg.Runner.(PolledRunner); ok {
		updates, err := p.Poll(ctx, t)
		if err != nil {
			return fmt.Errorf("engine: poll %s: %w", t.ID, err)
		}
		if t, err = e.Report(ctx, t.ID, updates); err != nil {
			return err
		}
	}
	t, err := e.enforceDeadline(ctx, t)
	if err != nil || t.Status.Terminal() {
		return err
	}
	lease, ok, err := e.keepLease(ctx, t, m)
	if err != nil || !ok {
		return err
	}
	return e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: ActionPoll, TaskID: t.ID, Attempt: m.Attempt + 1,
		Lease: lease}, e.pollDelay(m.Attempt))
}

// pollDelay is how long after poll number attempt (0 for the first after a dispatch) the
// next one comes: PollInterval, doubling up to MaxPollInterval.
func (e *Engine) pollDelay(attempt int) time.Duration {
	return min(e.cfg.PollInterval<<min(attempt, 6), e.cfg.MaxPollInterval)
}

// stop asks the runner to stop a cancelling task's devices, and has them polled unless another
// message holds the task's lease (a poll chain that will see the devices stop anyway).
func (e *Engine) stop(ctx context.Context, t *task.Task, m Message) error {
	if t.Status != task.StatusCancelling {
		return nil
	}
	if err := e.cfg.Runner.Cancel(ctx, t); err != nil {
		return fmt.Errorf("engine: cancel %s: %w", t.ID, err)
	}
	t, err := e.finishIfDone(ctx, t)
	if err != nil || t.Status.Terminal() {
		return err
	}
	// A polled runner reports the stopped devices on its next poll. Queue one: a task cancelled
	// before its dispatch finished has no poll chain yet, and would otherwise stay cancelling.
	if _, ok := e.cfg.Runner.(PolledRunner); ok {
		lease, ok, err := e.keepLease(ctx, t, m)
		if err != nil || !ok {
			return err
		}
		return e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: ActionPoll, TaskID: t.ID, Lease: lease}, e.cfg.PollInterval)
	}
	return nil
}

// enforceDeadline marks every device still working as timed out once the task's deadline has
// passed, asks the runner to stop them, and so ends the task timed_out.
func (e *Engine) enforceDeadline(ctx context.Context, t *task.Task) (*task.Task, error) {
	deadline := t.Deadline()
	now := e.cfg.Now().UTC()
	if deadline.IsZero() || now.Before(deadline) || t.Status.Terminal() {
		return t, nil
	}
	if err := e.cfg.Runner.Cancel(ctx, t); err != nil {
		e.log.WarnContext(ctx, "stopping devices at the deadline failed", "task_id", t.ID, "err", err)
	}
	var updates []task.DeviceUpdate
	cursor := ""
	for {
		page, err := e.cfg.Store.ListDevices(ctx, t.ID, task.DeviceQuery{
			Statuses: []task.DeviceStatus{task.DevicePending, task.DeviceRunning}, Limit: task.MaxPageSize, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		for _, d := range page.Devices {
			updates = append(updates, task.DeviceUpdate{DeviceID: d.ID, Status: task.DeviceTimedOut, At: now,
				Reason: fmt.Sprintf("the task's deadline of %ds passed", t.Request.TimeoutSeconds)})
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	return e.Report(ctx, t.ID, updates)
}

// Report applies device updates from a runner and, when every device has reached a terminal
// state, finishes the task. Duplicated and reordered updates are harmless: the store applies
// only forward moves.
func (e *Engine) Report(ctx context.Context, taskID string, updates []task.DeviceUpdate) (*task.Task, error) {
	t, applied, err := e.cfg.Store.ApplyDeviceUpdates(ctx, taskID, updates)
	if err != nil {
		return nil, fmt.Errorf("engine: apply %d device updates to %s: %w", len(updates), taskID, err)
	}
	if applied > 0 {
		e.notify(t)
		if endsDevices(updates) {
			// A lost device.finished event is made good by the next window's, which counts
			// the same devices, and by task.finished: the report itself must not fail for it.
			if err := e.emitWebhook(ctx, t, task.WebhookDeviceFinished); err != nil {
				e.log.WarnContext(ctx, "device.finished webhook not queued", "task_id", t.ID, "err", err)
			}
		}
	}
	return e.finishIfDone(ctx, t)
}

// finishIfDone moves a running or cancelling task whose devices are all in a terminal state to
// its terminal status, stores its result, and publishes the notification.
func (e *Engine) finishIfDone(ctx context.Context, t *task.Task) (*task.Task, error) {
	return e.end(ctx, t, "finished", func(t *task.Task) (task.Event, string, bool) {
		if t.Status != task.StatusRunning && t.Status != task.StatusCancelling || t.Counts.Done() < t.Counts.Total {
			return "", "", false
		}
		event, reason := e.outcome(t)
		return event, reason, true
	})
}

// maxWriteAttempts bounds how often a conditional write that lost a race is decided again on
// a fresh read before the conflict is returned. Each loss means another writer moved the task,
// and a task has few moves, so reaching the bound means something keeps rewriting it.
const maxWriteAttempts = 10

// end moves t to a terminal state with one conditional write that stores its result, then
// publishes the notification. decide says, for the task as it now is, which event ends it and
// why, or false when it is not to end. A write that loses a race re-reads the task and decides
// again, so only one writer ever ends a task. It returns the task as it now is; when the task
// ended but its notification could be neither published nor queued, it returns the ended task
// with that error.
func (e *Engine) end(ctx context.Context, t *task.Task, step string, decide func(*task.Task) (task.Event, string, bool)) (*task.Task, error) {
	for attempt := 1; ; attempt++ {
		event, reason, ok := decide(t)
		if !ok {
			return t, nil
		}
		// Devices that never started are listed as cancelled, as the store counts them.
		result, err := e.result(ctx, t)
		if err != nil {
			return nil, err
		}
		result.Reason = reason
		now := e.cfg.Now().UTC()
		tr, err := task.End(t, event, now, result, now.Add(e.cfg.Retention))
		if err != nil {
			return nil, err
		}
		tr.Step = step
		done, err := e.cfg.Store.Transition(ctx, tr)
		if task.IsCode(err, task.CodeConflict) && attempt < maxWriteAttempts {
			if t, err = e.cfg.Store.GetTask(ctx, t.ID); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		e.log.InfoContext(ctx, "task ended", "task_id", done.ID, "status", done.Status, "reason", reason,
			"succeeded", done.Counts.Succeeded, "errors", done.Counts.Errors(), "cancelled", done.Counts.Cancelled)
		e.notify(done)
		e.finished(ctx, done)
		return done, e.publish(ctx, done)
	}
}

// outcome decides how a task whose devices are all done ends.
func (e *Engine) outcome(t *task.Task) (task.Event, string) {
	if t.Status == task.StatusCancelling {
		return task.EventFinish, "cancelled by request"
	}
	deadline := t.Deadline()
	if t.Counts.TimedOut > 0 && !deadline.IsZero() && !e.cfg.Now().Before(deadline) {
		return task.EventDeadline, fmt.Sprintf("the task's deadline of %ds passed with %d devices unfinished",
			t.Request.TimeoutSeconds, t.Counts.TimedOut)
	}
	if budget := t.Request.ErrorBudget(); t.Counts.Errors() > budget {
		return task.EventFail, fmt.Sprintf("%d devices failed, more than maxErrors (%s) allows", t.Counts.Errors(), t.Request.MaxErrors)
	}
	return task.EventFinish, ""
}

// result lists the devices of a finished task into its stored result, each list capped.
func (e *Engine) result(ctx context.Context, t *task.Task) (*task.Result, error) {
	r := &task.Result{SucceededDevices: []string{}, FailedDevices: []string{}, CancelledDevices: []string{}}
	add := func(list *[]string, id string) {
		if len(*list) >= task.ResultListCap {
			r.Truncated = true
			return
		}
		*list = append(*list, id)
	}
	cursor := ""
	for {
		page, err := e.cfg.Store.ListDevices(ctx, t.ID, task.DeviceQuery{Limit: task.MaxPageSize, Cursor: cursor})
		if err != nil {
			return nil, fmt.Errorf("engine: list devices of %s: %w", t.ID, err)
		}
		for _, d := range page.Devices {
			switch {
			case d.Status == task.DeviceSucceeded:
				add(&r.SucceededDevices, d.ID)
			case d.Status.CountsAsError():
				add(&r.FailedDevices, d.ID)
			default:
				add(&r.CancelledDevices, d.ID)
			}
		}
		if cursor = page.Next; cursor == "" {
			return r, nil
		}
	}
}

// fail ends a task that cannot run; a task that has already ended is returned as it is.
func (e *Engine) fail(ctx context.Context, t *task.Task, reason string) (*task.Task, error) {
	return e.end(ctx, t, "failed", func(t *task.Task) (task.Event, string, bool) {
		_, err := t.Status.Next(task.EventFail)
		return task.EventFail, reason, err == nil
	})
}

// publish is called by the writer that moved t to its terminal state. When the notification
// cannot go out now, it queues a message for the executor, whose handling of any finished,
// unpublished task is to publish it (see Handle), so the queue's retries carry it.
func (e *Engine) publish(ctx context.Context, t *task.Task) error {
	err := e.ensurePublished(ctx, t)
	if err == nil {
		return nil
	}
	m := Message{Version: MessageVersion, Action: ActionDispatch, TaskID: t.ID}
	if qerr := e.cfg.Queue.Send(context.WithoutCancel(ctx), m, e.cfg.PollInterval); qerr != nil {
		return errors.Join(err, qerr)
	}
	return nil
}

// ensurePublished publishes the notification of a finished task, and queues its task.finished
// webhook event when the task subscribed to it, unless the store says they went out already,
// then records that they did. This is an outbox: the terminal write comes first, and
// an error here leaves the task unpublished, so the next message for it (the redelivery of this
// one) publishes again. A consumer may therefore see a notification twice, never zero times;
// the notification id is the same both times.
//
// Within one process, the publishing of one task is serialised and the task read again first:
// the writer that ended the task and the handlers of messages that arrive meanwhile (the cancel
// messages of repeated DELETEs) would otherwise each find it unpublished and each publish it. So
// a notification goes out once per terminal transition, but when a process dies between the
// publish and its record, or two processes (Lambdas) race.
func (e *Engine) ensurePublished(ctx context.Context, t *task.Task) error {
	hook := e.hooks.Queue != nil && t.Request.Notify.Wants(task.WebhookTaskFinished)
	if t.Published || e.cfg.Publisher == nil && !hook {
		return nil
	}
	unlock := e.publishing.lock(t.ID)
	defer unlock()
	if fresh, err := e.cfg.Store.GetTask(ctx, t.ID); err == nil && fresh.Published {
		t.Published = true
		return nil
	}
	if e.cfg.Publisher != nil {
		if err := e.cfg.Publisher.Publish(ctx, task.NotificationFor(t)); err != nil {
			e.log.ErrorContext(ctx, "publish failed; it is retried with the next message for the task",
				"task_id", t.ID, "status", t.Status, "err", err)
			return fmt.Errorf("engine: publish %s of %s: %w", t.Status, t.ID, err)
		}
	}
	// The task.finished webhook takes the same path: queued before the task is marked, so a
	// failure here publishes both again with the next message.
	if err := e.emitWebhook(ctx, t, task.WebhookTaskFinished); err != nil {
		e.log.ErrorContext(ctx, "the task.finished webhook could not be queued; it is retried with the next message for the task",
			"task_id", t.ID, "err", err)
		return err
	}
	if err := e.cfg.Store.MarkPublished(ctx, t.ID); err != nil {
		return fmt.Errorf("engine: mark %s published: %w", t.ID, err)
	}
	t.Published = true
	return nil
}

// keyedMutex is a mutex per key, held only while someone needs it.
type keyedMutex struct {
	mu   sync.Mutex
	keys map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.keys == nil {
		k.keys = make(map[string]*keyLock)
	}
	l := k.keys[key]
	if l == nil {
		l = &keyLock{}
		k.keys[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.keys, key)
		}
		k.mu.Unlock()
	}
}

func errorMessage(err error) string {
	var te *task.Error
	if errors.As(err, &te) {
		return te.Message
	}
	return err.Error()
}
