package awsflow

import (
	"testing"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestCancelReachesSSMAndEndsCancelled cancels a running task of two batches whose devices
// never finish, except two that finished before the cancel. The cancel message reaches SSM as
// one CancelCommand per command, the devices report cancelled on the next poll, and the task
// ends cancelled with the finished devices keeping their outcome; a repeated cancel sends
// nothing more. A task cancelled while still pending is cancelled at once and its dispatch,
// arriving later, sends nothing. The rule delivers one "Task Finished" event for each.
//
// It counts CancelCommand calls on the shared SSM server, so it does not run in parallel.
func TestCancelReachesSSMAndEndsCancelled(t *testing.T) {
	f := newFlow(t)
	f.wireApp(t)
	ctx := t.Context()
	ids := f.devices(60)
	finished := ids[58:]
	for _, id := range ids[:58] {
		ssmServer.Script(id, ssmtest.Script{Outcome: ssmtest.Never})
	}
	for _, id := range finished {
		ssmServer.Script(id, ssmtest.Script{Polls: 0, Outcome: ssmtest.Success})
	}
	tk := f.submit(t, ids)
	f.handleOnly(t, engine.ActionDispatch)
	f.handleOnly(t, engine.ActionPoll)
	if got := f.task(t, tk.ID); got.Counts != (task.Counts{Total: 60, Running: 58, Succeeded: 2}) {
		t.Fatalf("before the cancel: %+v", got.Counts)
	}

	cancelsBefore := ssmServer.Calls(ssmtest.OpCancelCommand)
	got, err := f.engine.Cancel(ctx, caller, tk.ID)
	if err != nil || got.Status != task.StatusCancelling {
		t.Fatalf("Cancel = %+v, %v; want cancelling", got, err)
	}
	if again, err := f.engine.Cancel(ctx, caller, tk.ID); err != nil || again.Status != task.StatusCancelling {
		t.Fatalf("repeated Cancel = %+v, %v; want cancelling", again, err)
	}
	final := f.runUntil(t, tk.ID, 10, terminal)
	want := task.Counts{Total: 60, Succeeded: 2, Cancelled: 58}
	if final.Status != task.StatusCancelled || final.Counts != want {
		t.Fatalf("final: %s %+v; want cancelled %+v", final.Status, final.Counts, want)
	}
	if n := ssmServer.Calls(ssmtest.OpCancelCommand) - cancelsBefore; n != 2 {
		t.Errorf("SSM received %d CancelCommand requests, want 2 (one per command)", n)
	}
	for _, c := range commands(tk.ID) {
		if !c.Cancelled {
			t.Errorf("command %q was not cancelled", c.Comment)
		}
	}
	devs := f.deviceStates(t, tk.ID)
	for _, id := range ids[:58] {
		if d := devs[id]; d.Status != task.DeviceCancelled || d.Ref == "" {
			t.Errorf("device %s: %s ref %q; want cancelled with its command", id, d.Status, d.Ref)
		}
	}
	for _, id := range finished {
		if d := devs[id]; d.Status != task.DeviceSucceeded {
			t.Errorf("device %s finished before the cancel but is %s", id, d.Status)
		}
	}

	// A pending task is cancelled at once; its dispatch finds it cancelled and does nothing.
	pending := f.submit(t, f.devices(3))
	got, err = f.engine.Cancel(ctx, caller, pending.ID)
	if err != nil || got.Status != task.StatusCancelled {
		t.Fatalf("Cancel of a pending task = %+v, %v; want cancelled", got, err)
	}
	f.count.Reset()
	f.drain(t)
	handled := false
	for _, m := range f.delivered(t) {
		if m.TaskID == pending.ID && m.Action == engine.ActionDispatch && !m.Failed {
			handled = true
		}
	}
	if !handled {
		t.Errorf("the cancelled task's dispatch was never handled")
	}
	if n := f.count.Count("SendCommand"); n != 0 || len(commands(pending.ID)) != 0 {
		t.Errorf("the cancelled pending task was sent to SSM (%d SendCommand)", n)
	}

	evs := f.finished(t, 2)
	byID := map[string]bool{}
	for _, d := range evs {
		byID[d.ID] = true
		if d.Status != task.StatusCancelled {
			t.Errorf("event %s has status %s", d.ID, d.Status)
		}
		if d.ID == tk.ID+":cancelled" && (d.TaskID != tk.ID || d.Counts.Cancelled != 58 || d.Counts.Succeeded != 2) {
			t.Errorf("event detail = %+v", d)
		}
	}
	if len(evs) != 2 || !byID[tk.ID+":cancelled"] || !byID[pending.ID+":cancelled"] {
		t.Errorf("events = %v; want one per cancelled task", byID)
	}
	f.noDeadLetters(t)
}
