package task_test

import (
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/task"
)

func TestConstructorsDeriveTheNewStatus(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tk := func(s task.Status) *task.Task {
		return &task.Task{ID: "t", Status: s, Version: 4, Counts: task.Counts{Total: 3, Pending: 2, Succeeded: 1}}
	}
	tr, err := task.Dispatch(tk(task.StatusPending), at)
	if err != nil || tr.To != task.StatusRunning || tr.Event != task.EventDispatch || tr.Version != 4 || tr.Check() != nil {
		t.Errorf("Dispatch = %+v, %v", tr, err)
	}
	if _, err := task.Dispatch(tk(task.StatusRunning), at); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("Dispatch of a running task = %v, want a conflict", err)
	}
	if tr, err := task.Cancel(tk(task.StatusRunning), at); err != nil || tr.To != task.StatusCancelling || tr.Ends() {
		t.Errorf("Cancel of a running task = %+v, %v", tr, err)
	}
	if _, err := task.Cancel(tk(task.StatusPending), at); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("Cancel of a pending task = %v, want a conflict (it ends the task: End)", err)
	}
	result := &task.Result{Reason: "r"}
	tr, err = task.End(tk(task.StatusPending), task.EventCancel, at, result, at.Add(time.Hour))
	if err != nil || tr.To != task.StatusCancelled || !tr.Ends() || tr.Result != result ||
		tr.Counts != (task.Counts{Total: 3, Succeeded: 1, Cancelled: 2}) {
		t.Errorf("End(cancel) of a pending task = %+v, %v", tr, err)
	}
	if _, err := task.End(tk(task.StatusRunning), task.EventCancel, at, result, at); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("End with an event that does not end the task = %v, want a conflict", err)
	}
	if _, err := task.End(tk(task.StatusCompleted), task.EventFail, at, result, at); !task.IsCode(err, task.CodeConflict) {
		t.Errorf("End of a finished task = %v, want a conflict", err)
	}
}

func TestCheckRefusesEveryTransitionTheTableDoesNot(t *testing.T) {
	t.Parallel()
	for _, from := range task.Statuses() {
		for _, e := range task.Events() {
			for _, to := range task.Statuses() {
				next, nerr := from.Next(e)
				err := task.Transition{TaskID: "t", From: from, Event: e, To: to}.Check()
				if legal := nerr == nil && next == to; legal != (err == nil) {
					t.Errorf("%s --%s--> %s: Check = %v", from, e, to, err)
				}
				if err != nil && !task.IsCode(err, task.CodeConflict) {
					t.Errorf("%s --%s--> %s: Check = %v, want a conflict", from, e, to, err)
				}
			}
		}
	}
}
