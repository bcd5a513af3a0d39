package task

import (
	"fmt"
	"time"
)

// Transition is a conditional change of a task's status: a store writes it only if the task is
// still in From at Version, and only if the state machine takes Event in From to To. Build one
// with Dispatch, Cancel or End, which read the task and derive To from the table, so that a
// caller cannot build an illegal write; a store refuses any other with CodeConflict (Check).
type Transition struct {
	TaskID  string
	From    Status
	Version int64
	Event   Event
	To      Status
	At      time.Time
	// Step replaces the task's current step when not empty.
	Step string
	// Result, ExpiresAt and Counts are stored with a transition that ends the task (Ends).
	// Counts are the task's counts at Version with the devices that never started counted as
	// UnstartedAtEnd (Counts.Ended); the version condition keeps them exact.
	Result    *Result
	ExpiresAt time.Time
	Counts    Counts
}

// Dispatch builds the transition that hands pending task t to its runner at time at.
func Dispatch(t *Task, at time.Time) (Transition, error) {
	return build(t, EventDispatch, at)
}

// Cancel builds the transition of a cancel that does not end t: a running task becomes
// cancelling, and a cancelling or cancelled one stays as it is (To equals From, which callers
// need not write). A cancel that ends a task (a pending one) is built with End, which stores
// its result.
func Cancel(t *Task, at time.Time) (Transition, error) {
	tr, err := build(t, EventCancel, at)
	if err == nil && tr.Ends() {
		return Transition{}, &Error{Code: CodeConflict, Status: t.Status,
			Message: fmt.Sprintf("a cancel ends %s task %s: build it with End", t.Status, t.ID)}
	}
	return tr, err
}

// Step builds the transition that records what running task t is doing (step) at time at,
// leaving its status as it is.
func Step(t *Task, step string, at time.Time) (Transition, error) {
	tr, err := build(t, EventStep, at)
	tr.Step = step
	return tr, err
}

// End builds the transition that ends t with event e at time at, storing result and the time
// the task expires. It refuses an event that does not move t into a terminal state.
func End(t *Task, e Event, at time.Time, result *Result, expiresAt time.Time) (Transition, error) {
	tr, err := build(t, e, at)
	if err != nil {
		return Transition{}, err
	}
	if !tr.Ends() {
		return Transition{}, &Error{Code: CodeConflict, Status: t.Status,
			Message: fmt.Sprintf("%q does not end a task that is %s", e, t.Status)}
	}
	tr.Result, tr.ExpiresAt, tr.Counts = result, expiresAt, t.Counts.Ended()
	return tr, nil
}

func build(t *Task, e Event, at time.Time) (Transition, error) {
	to, err := t.Status.Next(e)
	if err != nil {
		return Transition{}, fmt.Errorf("task %s: %w", t.ID, err)
	}
	return Transition{TaskID: t.ID, From: t.Status, Version: t.Version, Event: e, To: to, At: at}, nil
}

// Check reports, with CodeConflict, a transition the state machine does not allow: Event not
// taken in From, or leading elsewhere than To. Every store calls it before writing.
func (tr Transition) Check() error {
	to, err := tr.From.Next(tr.Event)
	if err != nil {
		return fmt.Errorf("task %s: %w", tr.TaskID, err)
	}
	if to != tr.To {
		return &Error{Code: CodeConflict, Status: tr.From,
			Message: fmt.Sprintf("a task that is %s becomes %s on %q, not %s", tr.From, to, tr.Event, tr.To)}
	}
	return nil
}

// Ends reports whether tr moves a task into a terminal state, which stores its result, counts
// and expiry and sets its completion time.
func (tr Transition) Ends() bool {
	return tr.To.Terminal() && !tr.From.Terminal()
}

// Starts reports whether tr moves a task to running, which sets its start time.
func (tr Transition) Starts() bool {
	return tr.To == StatusRunning && tr.From != StatusRunning
}
