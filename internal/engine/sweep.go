package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

// Nothing hangs: leases and the sweep.
//
// On AWS a task moves only when a message for it reaches the executor, and messages can be
// lost: deleted by hand, moved to the dead-letter queue after failing five times (SendCommand
// throttled for minutes, a permissions mistake), or never sent because a function stopped
// half way. So every unfinished task has a lease: the time by which the executor must have
// looked at it again. Submitting a task gives it DispatchGrace; a dispatch, a poll or a cancel
// that schedules more work renews it to LeaseTime ahead once it is within half of that of
// running out (so a task polled every minute costs a write every minute and a half, not every
// poll), and never past DeadlineGrace after the task's deadline.
//
// Sweep, run every minute, asks the store for the tasks whose lease has run out (an index of
// unfinished tasks by lease, not a scan; normally empty) and, for each:
//
//   - past its deadline and DeadlineGrace, ends it: a pending task fails (it could not be
//     dispatched in time), a running one times out as a poll at the deadline would do it (its
//     devices still working are stopped and timed out), a cancelling one becomes cancelled;
//   - otherwise re-drives it: it renews the lease and sends a dispatch (pending or running: a
//     dispatch resumes, sends what was never sent and starts polling again) or a cancel.
//
// Messages carry the lease they were sent under, and a chain of polls goes on only while the
// task still has that lease: when the sweep re-drives a task whose messages were only late,
// or a message is delivered twice, the chain that loses the lease's conditional renewal stops,
// so a task is never polled by two chains for long. A task therefore ends at the latest one
// sweep period after its deadline and DeadlineGrace (with the default 30 s and a sweep every
// minute, within two sweep periods of its deadline), whatever messages are lost.

// Leases is what a store keeps for Sweep: the lease of every unfinished task (Task.Lease).
// The DynamoDB store implements it with a sparse index of unfinished tasks; the embedded store
// has none, and needs none, since its server re-queues every unfinished task when it starts.
type Leases interface {
	// Due returns the ids of at most limit unfinished tasks whose lease is at or before now,
	// the longest overdue first.
	Due(ctx context.Context, now time.Time, limit int) ([]string, error)
	// Renew moves the lease of task id from prev (zero for a task that has none) to next. It
	// returns an error with code task.CodeConflict, and changes nothing, when the lease is no
	// longer prev or the task has finished, and task.CodeNotFound when there is no such task.
	Renew(ctx context.Context, id string, prev, next time.Time) error
}

// sweepPage is how many due tasks Sweep takes from the store at a time.
const sweepPage = 100

// Sweep ends or re-drives every unfinished task whose lease has run out (see above), as long
// as ctx lasts, and returns how many it handled. A task it could not handle keeps its lease
// and is taken again by the next sweep; the errors are joined in the result.
func (e *Engine) Sweep(ctx context.Context) (int, error) {
	if e.cfg.Leases == nil {
		return 0, nil
	}
	handled := 0
	var errs []error
	for range 10 {
		now := e.cfg.Now().UTC()
		ids, err := e.cfg.Leases.Due(ctx, now, sweepPage)
		if err != nil {
			return handled, errors.Join(append(errs, fmt.Errorf("engine: sweep: %w", err))...)
		}
		progress := 0
		for _, id := range ids {
			if ctx.Err() != nil {
				break
			}
			if err := e.sweep(ctx, id, now); err != nil {
				e.log.ErrorContext(ctx, "sweep could not handle a task; the next sweep tries again", "task_id", id, "err", err)
				errs = append(errs, err)
				continue
			}
			progress++
		}
		handled += progress
		if len(ids) < sweepPage || progress == 0 || ctx.Err() != nil {
			break
		}
	}
	return handled, errors.Join(errs...)
}

// sweep ends or re-drives one task whose lease ran out by now.
func (e *Engine) sweep(ctx context.Context, id string, now time.Time) error {
	t, err := e.cfg.Store.GetTask(ctx, id)
	if task.IsCode(err, task.CodeNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if t.Status.Terminal() {
		return e.ensurePublished(ctx, t)
	}
	if t.Lease.After(now) {
		return nil // renewed since the index was read
	}
	if !now.Before(deadline(t).Add(e.cfg.DeadlineGrace)) {
		e.log.WarnContext(ctx, "sweep ends a task past its deadline", "task_id", t.ID, "status", t.Status)
		if t.Status == task.StatusPending {
			_, err = e.fail(ctx, t, fmt.Sprintf("the task could not be dispatched within its timeout of %ds", t.Request.TimeoutSeconds))
		} else {
			_, err = e.enforceDeadline(ctx, t)
		}
		return err
	}
	next := e.nextLease(t, now)
	err = e.cfg.Leases.Renew(ctx, t.ID, t.Lease, next)
	if task.IsCode(err, task.CodeConflict) || task.IsCode(err, task.CodeNotFound) {
		return nil // renewed by a message, or finished, since it was read
	}
	if err != nil {
		return err
	}
	action := ActionDispatch
	if t.Status == task.StatusCancelling {
		action = ActionCancel
	}
	e.log.WarnContext(ctx, "sweep re-drives a task nothing looked at in time", "task_id", t.ID, "status", t.Status,
		"action", action, "lease", t.Lease)
	return e.cfg.Queue.Send(ctx, Message{Version: MessageVersion, Action: action, TaskID: t.ID, Lease: next.UnixNano()}, 0)
}

// deadline is when an unfinished task has run out of time: its start plus its timeout, or,
// for a task that never started, its creation plus its timeout.
func deadline(t *task.Task) time.Time {
	if d := t.Deadline(); !d.IsZero() {
		return d
	}
	timeout := t.Request.TimeoutSeconds
	if timeout <= 0 {
		timeout = task.DefaultTimeout
	}
	return t.CreatedAt.Add(time.Duration(timeout) * time.Second)
}

// nextLease is the lease t gets at now: LeaseTime ahead, but no later than DeadlineGrace past
// its deadline, when Sweep ends it.
func (e *Engine) nextLease(t *task.Task, now time.Time) time.Time {
	next := now.Add(e.cfg.LeaseTime)
	if end := deadline(t).Add(e.cfg.DeadlineGrace); end.Before(next) {
		next = end
	}
	return next
}

// lease returns the lease a message for t carries: t's own, or 0 without leases.
func (e *Engine) lease(t *task.Task) int64 {
	if e.cfg.Leases == nil || t.Lease.IsZero() {
		return 0
	}
	return t.Lease.UnixNano()
}

// holds reports whether message m, which carries a lease, still speaks for t: t has that
// lease. Without leases, or for a message that carries none (sent before leases existed),
// every message does.
func (e *Engine) holds(t *task.Task, m Message) bool {
	return e.cfg.Leases == nil || m.Lease == 0 || t.Lease.UnixNano() == m.Lease
}

// keepLease is called by a message about to schedule more work for t (the next poll). It
// returns the lease that work's message is to carry, renewed when it is within half of
// LeaseTime of running out, or false when the lease belongs to another message now (the sweep
// re-drove t, or m was duplicated and its twin renewed first), in which case this chain ends.
func (e *Engine) keepLease(ctx context.Context, t *task.Task, m Message) (int64, bool, error) {
	if !e.holds(t, m) {
		e.log.InfoContext(ctx, "another message holds the task's lease; this one schedules nothing", "task_id", t.ID, "action", m.Action)
		return 0, false, nil
	}
	if e.cfg.Leases == nil {
		return 0, true, nil
	}
	now := e.cfg.Now().UTC()
	next := e.nextLease(t, now)
	if !t.Lease.IsZero() && (t.Lease.Sub(now) >= e.cfg.LeaseTime/2 || !next.After(t.Lease)) {
		return t.Lease.UnixNano(), true, nil
	}
	err := e.cfg.Leases.Renew(ctx, t.ID, t.Lease, next)
	if task.IsCode(err, task.CodeConflict) {
		e.log.InfoContext(ctx, "the task's lease was renewed by another message; this one schedules nothing", "task_id", t.ID, "action", m.Action)
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("engine: renew the lease of %s: %w", t.ID, err)
	}
	t.Lease = next
	return next.UnixNano(), true, nil
}
