package awsflow

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestNeverFinishingDeviceTimesOutAtTheDeadline runs a task whose devices never finish on SSM
// and moves an injected clock (see wireWithClock) to the task's deadline: a poll a moment
// before it leaves the task running, the poll at it stops the command with CancelCommand,
// marks the unfinished devices timed_out and ends the task timed_out at exactly the deadline,
// with its event delivered.
func TestNeverFinishingDeviceTimesOutAtTheDeadline(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	// The clock starts at the real time, which the SSM server stamps commands with, so that the
	// runner's search for commands already sent (ListCommands since the task started) agrees
	// with it.
	clk := clocktest.New(time.Now().UTC())
	f.wireWithClock(t, clk.Now)
	ids := f.devices(3)
	ssmServer.Script(ids[0], ssmtest.Script{Polls: 0, Outcome: ssmtest.Success, Stdout: "done\n"})
	ssmServer.Script(ids[1], ssmtest.Script{Outcome: ssmtest.Never})
	ssmServer.Script(ids[2], ssmtest.Script{Outcome: ssmtest.Never})
	const timeout = 900
	tk := f.submit(t, ids, func(r *task.Draft) { r.TimeoutSeconds = new(timeout) })

	f.handleOnly(t, engine.ActionDispatch)
	started := f.task(t, tk.ID).StartedAt
	if started == nil || !started.Equal(clk.Now()) {
		t.Fatalf("startedAt = %v, want the clock's %v", started, clk.Now())
	}
	deadline := started.Add(timeout * time.Second)
	f.handleOnly(t, engine.ActionPoll)
	running := task.Counts{Total: 3, Running: 2, Succeeded: 1}
	if got := f.task(t, tk.ID); got.Status != task.StatusRunning || got.Counts != running {
		t.Fatalf("after the first poll: %s %+v, want running %+v", got.Status, got.Counts, running)
	}

	clk.Set(deadline.Add(-time.Millisecond))
	f.handleOnly(t, engine.ActionPoll)
	if got := f.task(t, tk.ID); got.Status != task.StatusRunning || got.Counts != running {
		t.Fatalf("just before the deadline: %s %+v, want still running %+v", got.Status, got.Counts, running)
	}
	if n := f.count.Count("CancelCommand"); n != 0 {
		t.Fatalf("%d CancelCommand before the deadline", n)
	}

	clk.Set(deadline)
	f.handleOnly(t, engine.ActionPoll)
	final := f.task(t, tk.ID)
	want := task.Counts{Total: 3, Succeeded: 1, TimedOut: 2}
	if final.Status != task.StatusTimedOut || final.Counts != want {
		t.Fatalf("at the deadline: %s %+v, want timed_out %+v", final.Status, final.Counts, want)
	}
	if final.CompletedAt == nil || !final.CompletedAt.Equal(deadline) {
		t.Errorf("completedAt = %v, want the deadline %v", final.CompletedAt, deadline)
	}
	if final.Result == nil || !strings.Contains(final.Result.Reason, "deadline") || len(final.Result.FailedDevices) != 2 {
		t.Errorf("result = %+v; want the deadline as reason and 2 failed devices", final.Result)
	}
	devs := f.deviceStates(t, tk.ID)
	if d := devs[ids[0]]; d.Status != task.DeviceSucceeded || d.Stdout != "done\n" {
		t.Errorf("the finished device: %s %q", d.Status, d.Stdout)
	}
	for _, id := range ids[1:] {
		if d := devs[id]; d.Status != task.DeviceTimedOut || d.Reason == "" || d.CompletedAt == nil || !d.CompletedAt.Equal(deadline) {
			t.Errorf("device %s: %s at %v reason %q; want timed_out at the deadline with a reason", id, d.Status, d.CompletedAt, d.Reason)
		}
	}

	// The devices still working were told to stop.
	if n := f.count.Count("CancelCommand"); n != 1 {
		t.Errorf("%d CancelCommand requests, want 1", n)
	}
	cmds := commands(tk.ID)
	if len(cmds) != 1 || !cmds[0].Cancelled {
		t.Fatalf("commands = %+v; want the one command, cancelled", cmds)
	}
	for _, id := range ids[1:] {
		if st, _ := ssmServer.Invocation(cmds[0].CommandID, id); st.Status != ssmtest.StatusCancelling {
			t.Errorf("invocation on %s is %s, want Cancelling", id, st.Status)
		}
	}

	evs := f.finished(t, 1)
	if len(evs) != 1 || evs[0].ID != tk.ID+":timed_out" || evs[0].Status != task.StatusTimedOut ||
		!evs[0].CompletedAt.Equal(deadline) || evs[0].Counts.TimedOut != 2 {
		t.Errorf("events = %+v; want one timed_out event at the deadline", evs)
	}
	f.noDeadLetters(t)
}
