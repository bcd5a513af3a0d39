package awsflow

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestOfflineNodeIsUndeliverableAtTheDeliveryTimeout runs a task of four devices, one of them
// switched off, with deliveryTimeoutSeconds 60 and an hour's timeout, on an SSM server whose
// clock the test moves: the command carries the 60 s as SSM's delivery timeout; the other
// devices succeed while the offline one stays pending; once 60 s have passed SSM reports it
// DeliveryTimedOut, it becomes undeliverable with SSM's status in its reason, and the task
// completes, listing it, 61 s after it started instead of timing out an hour later.
func TestOfflineNodeIsUndeliverableAtTheDeliveryTimeout(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	clk := clocktest.New(time.Now().UTC())
	f.ssm = ssmtest.Start(t)
	f.ssm.SetNow(clk.Now)
	f.wireWithClock(t, clk.Now)
	ids := f.devices(4)
	offline := ids[2]
	f.ssm.Script(offline, ssmtest.Script{Outcome: ssmtest.Offline})
	tk := f.submit(t, ids, func(r *task.Draft) { r.TimeoutSeconds, r.DeliveryTimeoutSeconds = new(3600), new(60) })

	f.handleOnly(t, engine.ActionDispatch)
	started := *f.task(t, tk.ID).StartedAt
	if cmds := commandsOn(f.ssm, tk.ID); len(cmds) != 1 || cmds[0].TimeoutSeconds != 60 {
		t.Fatalf("commands %+v; want one with SSM's delivery timeout at 60 s", cmds)
	}
	f.handleOnly(t, engine.ActionPoll)
	f.handleOnly(t, engine.ActionPoll)
	if got := f.task(t, tk.ID); got.Status != task.StatusRunning || got.Counts != (task.Counts{Total: 4, Pending: 1, Succeeded: 3}) {
		t.Fatalf("with the node offline: %s %+v; want running, 3 succeeded and the offline node pending", got.Status, got.Counts)
	}

	clk.Set(started.Add(61 * time.Second))
	f.handleOnly(t, engine.ActionPoll)
	final := f.task(t, tk.ID)
	if final.Status != task.StatusCompleted || final.Counts != (task.Counts{Total: 4, Succeeded: 3, Undeliverable: 1}) {
		t.Fatalf("after the delivery timeout: %s %+v; want completed with 3 succeeded and 1 undeliverable", final.Status, final.Counts)
	}
	if took := final.CompletedAt.Sub(started); took != 61*time.Second {
		t.Errorf("the task took %v, want 61 s (its deadline was an hour)", took)
	}
	if final.Result == nil || !slices.Equal(final.Result.FailedDevices, []string{offline}) {
		t.Errorf("result %+v; want the offline node listed", final.Result)
	}
	d := f.deviceStates(t, tk.ID)[offline]
	if d.Status != task.DeviceUndeliverable || !strings.Contains(d.Reason, "DeliveryTimedOut") {
		t.Errorf("offline device: %s %q; want undeliverable naming DeliveryTimedOut", d.Status, d.Reason)
	}
	if evs := f.finished(t, 1); len(evs) != 1 || evs[0].Status != task.StatusCompleted || evs[0].Counts.Undeliverable != 1 {
		t.Errorf("events = %+v; want one completed event with one undeliverable device", evs)
	}
	f.noDeadLetters(t)
}

// TestUnknownInstanceIDsAreIsolated sends a batch of 50 of which SSM knows 48: the batch is
// split until the 2 unknown ids stand alone, within the SendCommands ssmrun.MaxSendCommands
// states; the 48 run, each exactly once, and succeed; the 2 are undeliverable as unknown to
// SSM; the task completes and lists them.
//
// It scripts devices on the shared SSM server, with ids of its own.
func TestUnknownInstanceIDsAreIsolated(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	f.wireApp(t)
	ids := f.devices(50)
	unknown := []string{ids[7], ids[31]}
	for _, id := range unknown {
		ssmServer.Script(id, ssmtest.Script{Outcome: ssmtest.Invalid})
	}
	tk := f.submit(t, ids)
	c := f.measure(t, "dispatch, 50 devices, 2 unknown to SSM", func() { f.handleOnly(t, engine.ActionDispatch) })
	bound := ssmrun.MaxSendCommands(50, len(unknown))
	t.Logf("SendCommands: %d, bound 1 + b·(⌈log2 k⌉ + 1) = %d", c["SSM.SendCommand"], bound)
	if n := c["SSM.SendCommand"]; n > bound || n < 3 {
		t.Errorf("%d SendCommands, want at least 3 and at most %d", n, bound)
	}
	sentTo := map[string]int{}
	for _, cmd := range commands(tk.ID) {
		for _, id := range cmd.InstanceIDs {
			sentTo[id]++
		}
	}
	for _, id := range ids {
		want := 1
		if slices.Contains(unknown, id) {
			want = 0
		}
		if sentTo[id] != want {
			t.Errorf("%s sent %d times, want %d", id, sentTo[id], want)
		}
	}

	final := f.runUntil(t, tk.ID, 10, terminal)
	if final.Status != task.StatusCompleted || final.Counts != (task.Counts{Total: 50, Succeeded: 48, Undeliverable: 2}) {
		t.Fatalf("final: %s %+v; want completed with 48 succeeded and 2 undeliverable", final.Status, final.Counts)
	}
	failed := slices.Clone(final.Result.FailedDevices)
	slices.Sort(failed)
	if !slices.Equal(failed, unknown) {
		t.Errorf("failed devices %v, want %v", failed, unknown)
	}
	for _, id := range unknown {
		if d := f.deviceStates(t, tk.ID)[id]; !strings.Contains(d.Reason, "SSM does not know this managed node") {
			t.Errorf("%s: reason %q", id, d.Reason)
		}
	}
	f.noDeadLetters(t)
}
