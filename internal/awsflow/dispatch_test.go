package awsflow

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestDispatchRecoversFromALostSendCommandAnswer runs a 120-device task over DynamoDB, SQS and
// SSM from submit to completed. Its dispatch is three SendCommand calls; SSM accepts the second
// but its answer is lost (as when the function crashes right after SSM took the command), so
// the executor reports the message failed and SQS delivers it again. The redelivered dispatch
// finds the accepted command with ListCommands and sends only the third batch: three commands
// in all, every device in exactly one. Polls then bring every device to its scripted outcome,
// and the counts, the devices, the result and the "Task Finished" event are exact.
//
// It injects faults into the shared SSM server, so it does not run in parallel.
func TestDispatchRecoversFromALostSendCommandAnswer(t *testing.T) {
	f := newFlow(t)
	f.wireApp(t)
	ctx := context.Background()
	ids := f.devices(120)
	failing, unreachable, slow := ids[10:15], ids[60:62], ids[100:105]
	for _, id := range failing {
		ssmServer.Script(id, ssmtest.Script{Polls: 0, Outcome: ssmtest.Failed, ExitCode: 3, Stdout: "patching\n", Stderr: "boom\n"})
	}
	for _, id := range unreachable {
		ssmServer.Script(id, ssmtest.Script{Polls: 1, Outcome: ssmtest.Undeliverable})
	}
	for _, id := range slow {
		ssmServer.Script(id, ssmtest.Script{Polls: 3, Outcome: ssmtest.Success, Stdout: "slow but fine\n"})
	}
	tk := f.submit(t, ids)

	sendsBefore := ssmServer.Calls(ssmtest.OpSendCommand)
	ssmServer.PassNext(ssmtest.OpSendCommand, 1)
	ssmServer.FailAfterAccept(ssmtest.OpSendCommand, 1)
	first := f.deliverNext(t).messages(t)
	if len(first) != 1 || first[0].Action != engine.ActionDispatch || !first[0].Failed {
		t.Fatalf("first delivery = %+v; want the dispatch, reported failed", first)
	}
	if n := len(commands(tk.ID)); n != 2 {
		t.Fatalf("after the lost answer SSM holds %d commands of the task, want 2", n)
	}
	if recorded, err := f.reader.Commands(ctx, tk.ID); err != nil || len(recorded) != 1 {
		t.Fatalf("recorded commands = %v, %v; want only batch 0 (batch 1's answer was lost)", recorded, err)
	}

	again := f.deliverNext(t).messages(t)
	if len(again) != 1 || again[0].Action != engine.ActionDispatch || again[0].Failed || again[0].ReceiveCount != "2" {
		t.Fatalf("second delivery = %+v; want the same dispatch, received a second time, handled", again)
	}
	checkBatches(t, tk.ID, ids)
	if n := ssmServer.Calls(ssmtest.OpSendCommand) - sendsBefore; n != 3 {
		t.Errorf("SSM received %d SendCommand requests, want 3: the lost one must not be sent again", n)
	}
	recorded, err := f.reader.Commands(ctx, tk.ID)
	if err != nil || len(recorded) != 3 {
		t.Fatalf("recorded commands = %v, %v; want 3", recorded, err)
	}
	for _, c := range commands(tk.ID) {
		if !slices.Contains(slices.Collect(maps.Values(recorded)), c.CommandID) {
			t.Errorf("command %s (%q) is not recorded", c.CommandID, c.Comment)
		}
	}

	final := f.runUntil(t, tk.ID, 20, terminal)
	want := task.Counts{Total: 120, Succeeded: 113, Failed: 5, Undeliverable: 2}
	if final.Status != task.StatusCompleted || final.Counts != want {
		t.Fatalf("final: %s %+v; want completed %+v", final.Status, final.Counts, want)
	}
	checkBatches(t, tk.ID, ids)
	if final.Result == nil || len(final.Result.SucceededDevices) != 113 || len(final.Result.FailedDevices) != 7 {
		t.Errorf("result = %+v; want 113 succeeded and 7 failed ids", final.Result)
	}

	devs := f.deviceStates(t, tk.ID)
	if len(devs) != 120 {
		t.Fatalf("%d device items, want 120", len(devs))
	}
	for _, id := range ids {
		d := devs[id]
		switch {
		case slices.Contains(failing, id):
			if d.Status != task.DeviceFailed || d.ExitCode == nil || *d.ExitCode != 3 || !strings.Contains(d.Stderr, "boom") {
				t.Errorf("failing device %s: %s exit %v stderr %q", id, d.Status, d.ExitCode, d.Stderr)
			}
		case slices.Contains(unreachable, id):
			if d.Status != task.DeviceUndeliverable || d.Reason == "" {
				t.Errorf("unreachable device %s: %s reason %q", id, d.Status, d.Reason)
			}
		case slices.Contains(slow, id):
			if d.Status != task.DeviceSucceeded || d.Stdout != "slow but fine\n" {
				t.Errorf("slow device %s: %s stdout %q", id, d.Status, d.Stdout)
			}
		default:
			if d.Status != task.DeviceSucceeded || d.ExitCode == nil || *d.ExitCode != 0 || d.Ref == "" {
				t.Errorf("device %s: %s exit %v ref %q", id, d.Status, d.ExitCode, d.Ref)
			}
		}
	}

	// The engine asked for the dispatch at once and for each poll after a delay that backs off.
	if ds := f.sent.of(engine.ActionDispatch); len(ds) != 1 || ds[0].DelaySeconds != 0 {
		t.Errorf("dispatch messages sent: %+v; want one, undelayed", ds)
	}
	polls := f.sent.of(engine.ActionPoll)
	// How many polls it takes depends on when the slow devices settle; two show the backoff.
	if len(polls) < 2 || polls[0].DelaySeconds != 5 {
		t.Fatalf("poll messages sent: %+v; want at least 2, the first delayed 5 s", polls)
	}
	for i := 1; i < len(polls); i++ {
		if polls[i].DelaySeconds < polls[i-1].DelaySeconds || polls[i].Attempt != polls[i-1].Attempt+1 {
			t.Errorf("poll %d: attempt %d delay %d s after attempt %d delay %d s; want backoff", i,
				polls[i].Attempt, polls[i].DelaySeconds, polls[i-1].Attempt, polls[i-1].DelaySeconds)
		}
	}

	evs := f.finished(t, 1)
	if len(evs) != 1 {
		t.Fatalf("%d events delivered, want 1", len(evs))
	}
	d := evs[0]
	if d.ID != tk.ID+":completed" || d.TaskID != tk.ID || d.Status != task.StatusCompleted || d.Version != final.Version ||
		d.Counts.Succeeded != 113 || d.Counts.Failed != 5 || d.Counts.Undeliverable != 2 || d.Counts.Total != 120 {
		t.Errorf("event detail = %+v", d)
	}
	if !f.task(t, tk.ID).Published {
		t.Errorf("the task is not marked published")
	}
	f.noDeadLetters(t)
}
