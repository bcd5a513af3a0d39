package engine_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// alice is the owner of the tests' tasks.
var alice = task.Caller{Owner: "alice"}

// stops returns the devices named by the stop-devices messages queued for a task.
func (q *queue) stops(taskID string) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, s := range q.sent {
		if s.m.Action == engine.ActionStopDevices && s.m.TaskID == taskID {
			out = append(out, s.m.DeviceIDs...)
		}
	}
	return out
}

func TestCancelDeviceSemantics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	tk := b.submit(t, "a", "b", "c", "d")
	b.handle(t, engine.ActionDispatch, tk.ID)
	b.report(t, tk.ID, task.DeviceRunning, "a", "b")

	// A pending device is cancelled at once, and the runner is told to leave it out.
	got, d, err := b.eng.CancelDevice(ctx, alice, tk.ID, "c")
	if err != nil || d.Status != task.DeviceCancelled || d.CancelRequestedAt == nil || d.Reason == "" ||
		got.Status != task.StatusRunning || got.Counts.Cancelled != 1 || got.Counts.Pending != 1 {
		t.Fatalf("cancel of a pending device = %+v, %+v, %v", got, d, err)
	}
	if !slices.Equal(b.queue.stops(tk.ID), []string{"c"}) {
		t.Fatalf("stop messages %v, want one for c", b.queue.stops(tk.ID))
	}

	// A running device is marked and stays running until its runner reports the stop.
	got, d, err = b.eng.CancelDevice(ctx, alice, tk.ID, "a")
	if err != nil || d.Status != task.DeviceRunning || d.CancelRequestedAt == nil || got.Counts.Running != 2 {
		t.Fatalf("cancel of a running device = %+v, %+v, %v", got.Counts, d, err)
	}
	version := got.Version
	// Again: nothing is written, the stop is sent again.
	got, d, err = b.eng.CancelDevice(ctx, alice, tk.ID, "a")
	if err != nil || d.Status != task.DeviceRunning || got.Version != version {
		t.Fatalf("repeated cancel of a running device = v%d %+v, %v; want v%d unchanged", got.Version, d, err, version)
	}
	if !slices.Equal(b.queue.stops(tk.ID), []string{"c", "a", "a"}) {
		t.Fatalf("stop messages %v, want c, a, a", b.queue.stops(tk.ID))
	}
	// The executor hands each stop to the runner.
	if err := b.eng.Handle(ctx, engine.Message{Version: engine.MessageVersion, Action: engine.ActionStopDevices,
		TaskID: tk.ID, DeviceIDs: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.runner.stopped, []string{"a"}) {
		t.Fatalf("the runner was asked to stop %v, want a", b.runner.stopped)
	}
	b.report(t, tk.ID, task.DeviceCancelled, "a")

	// A cancelled device may be cancelled again: nothing changes.
	if _, d, err = b.eng.CancelDevice(ctx, alice, tk.ID, "c"); err != nil || d.Status != task.DeviceCancelled {
		t.Fatalf("repeated cancel of a cancelled device = %+v, %v", d, err)
	}
	// A device that ended otherwise cannot, and the error carries its status.
	b.report(t, tk.ID, task.DeviceSucceeded, "b")
	_, _, err = b.eng.CancelDevice(ctx, alice, tk.ID, "b")
	var te *task.Error
	if !errors.As(err, &te) || te.Code != task.CodeConflict || te.DeviceStatus != task.DeviceSucceeded {
		t.Fatalf("cancel of a succeeded device: %v", err)
	}
	// Unknown devices and other owners' tasks are not found.
	if _, _, err := b.eng.CancelDevice(ctx, alice, tk.ID, "zz"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("cancel of an unknown device: %v", err)
	}
	if _, _, err := b.eng.CancelDevice(ctx, task.Caller{Owner: "mallory"}, tk.ID, "d"); !task.IsCode(err, task.CodeNotFound) {
		t.Errorf("cancel by another owner: %v", err)
	}

	// Cancelling the last device left ends the task like any other: completed.
	got, d, err = b.eng.CancelDevice(ctx, alice, tk.ID, "d")
	if err != nil || d.Status != task.DeviceCancelled || got.Status != task.StatusCompleted {
		t.Fatalf("cancel of the last device = %s, %+v, %v; want the task completed", got.Status, d, err)
	}
	if want := (task.Counts{Total: 4, Succeeded: 1, Cancelled: 3}); got.Counts != want ||
		!slices.Equal(got.Result.CancelledDevices, []string{"a", "c", "d"}) || !slices.Equal(got.Result.SucceededDevices, []string{"b"}) {
		t.Fatalf("the finished task: %+v %+v", got.Counts, got.Result)
	}
	// A device of a finished task cannot be cancelled; the error carries the task's status.
	_, _, err = b.eng.CancelDevice(ctx, alice, tk.ID, "c")
	if !errors.As(err, &te) || te.Code != task.CodeConflict || te.Status != task.StatusCompleted {
		t.Fatalf("cancel of a device of a completed task: %v", err)
	}
	if n := len(b.pub.all()); n != 1 {
		t.Errorf("published %d notifications, want 1", n)
	}
}

func TestCancelDeviceOfAPendingTask(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	tk := b.submit(t, "a", "b")
	for _, id := range []string{"a", "b"} {
		if got, d, err := b.eng.CancelDevice(ctx, alice, tk.ID, id); err != nil || d.Status != task.DeviceCancelled ||
			got.Status != task.StatusPending {
			t.Fatalf("cancel of %s of a pending task = %s, %+v, %v", id, got.Status, d, err)
		}
	}
	// The dispatch finds nothing left to run and the task completes.
	b.handle(t, engine.ActionDispatch, tk.ID)
	got, err := b.eng.Get(ctx, alice, tk.ID)
	if err != nil || got.Status != task.StatusCompleted || got.Counts.Cancelled != 2 {
		t.Fatalf("after the dispatch: %+v, %v", got, err)
	}
}

func TestCancelDeviceThatCannotBeQueued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	tk := b.submit(t, "a", "b")
	b.handle(t, engine.ActionDispatch, tk.ID)
	b.report(t, tk.ID, task.DeviceRunning, "a")
	b.queue.mu.Lock()
	b.queue.err = errors.New("queue down")
	b.queue.mu.Unlock()
	if _, _, err := b.eng.CancelDevice(ctx, alice, tk.ID, "a"); !task.IsCode(err, task.CodeUnavailable) {
		t.Fatalf("cancel with the queue down: %v, want unavailable", err)
	}
	b.queue.mu.Lock()
	b.queue.err = nil
	b.queue.mu.Unlock()
	// The mark stands; the repeated request sends the stop.
	if _, d, err := b.eng.CancelDevice(ctx, alice, tk.ID, "a"); err != nil || d.CancelRequestedAt == nil {
		t.Fatalf("repeated cancel: %+v, %v", d, err)
	}
	if !slices.Equal(b.queue.stops(tk.ID), []string{"a"}) {
		t.Errorf("stop messages %v, want one for a", b.queue.stops(tk.ID))
	}
	if err := b.eng.Handle(ctx, engine.Message{Version: engine.MessageVersion, Action: engine.ActionStopDevices, TaskID: tk.ID}); !errors.Is(err, engine.ErrMalformed) {
		t.Errorf("a stop-devices message naming no device: %v, want ErrMalformed", err)
	}
}
