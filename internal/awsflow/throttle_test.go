package awsflow

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/fleetrun/fleetrun/internal/awsretry"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestThrottlingIsSurvived runs a 120-device task while DynamoDB and SSM throttle it at every
// step, some of it for longer than the retries inside a call last:
//
//   - submit: the transaction is throttled twice; the SDK retries it.
//   - dispatch, first delivery: GetItem is throttled as often as the SDK tries (awsretry's
//     attempts), so the store gives up, the executor reports the message failed and SQS
//     delivers it again.
//   - dispatch, second delivery: ListCommands is throttled once (the SDK retries it), and the
//     second batch's SendCommand as often as the SDK tries, so the message fails again with
//     the first batch sent and recorded.
//   - dispatch, third delivery: the rest is sent.
//   - polls: ListCommandInvocations, BatchGetItem, TransactWriteItems, UpdateItem and Query are
//     throttled a few times each; the SDK and the store retry them.
//
// The task still completes with exact counts, every device sent exactly once, and every
// injected failure was met. It injects faults into the shared SSM server, so it does not run
// in parallel.
func TestThrottlingIsSurvived(t *testing.T) {
	f := newFlow(t)
	f.wireApp(t)
	ids := f.devices(120)

	f.faults.throttle("TransactWriteItems", 2, throttling)
	tk := f.submit(t, ids)
	if n := f.faults.hit("TransactWriteItems"); n != 2 {
		t.Fatalf("submit met %d of 2 throttled transactions", n)
	}

	sendsBefore := ssmServer.Calls(ssmtest.OpSendCommand)
	f.faults.throttle("GetItem", awsretry.DefaultMaxAttempts, throughputExceeded)
	ssmServer.ThrottleNext(ssmtest.OpListCommands, 1)
	ssmServer.PassNext(ssmtest.OpSendCommand, 1)
	ssmServer.ThrottleNext(ssmtest.OpSendCommand, awsretry.DefaultMaxAttempts)
	for i, want := range []struct {
		failed  bool
		receive string
	}{{true, "1"}, {true, "2"}, {false, "3"}} {
		msgs := f.deliverNext(t).messages(t)
		if len(msgs) != 1 || msgs[0].Action != engine.ActionDispatch || msgs[0].Failed != want.failed || msgs[0].ReceiveCount != want.receive {
			t.Fatalf("dispatch delivery %d = %+v; want failed %v, receive count %s", i+1, msgs, want.failed, want.receive)
		}
		if i == 1 {
			if n := len(commands(tk.ID)); n != 1 {
				t.Fatalf("after the throttled SendCommand SSM holds %d commands of the task, want 1", n)
			}
		}
	}
	checkBatches(t, tk.ID, ids)
	if n := ssmServer.Calls(ssmtest.OpSendCommand) - sendsBefore; n != 3+awsretry.DefaultMaxAttempts {
		t.Errorf("SSM received %d SendCommand requests, want %d: 3 accepted and the rest throttled", n, 3+awsretry.DefaultMaxAttempts)
	}

	ssmServer.ThrottleNext(ssmtest.OpListCommandInvocations, 2)
	f.faults.throttle("BatchGetItem", 3, throughputExceeded)
	f.faults.throttle("TransactWriteItems", 3, throttling)
	f.faults.throttle("UpdateItem", 2, throughputExceeded)
	f.faults.throttle("Query", 2, throttling)
	final := f.runUntil(t, tk.ID, 20, terminal)
	want := task.Counts{Total: 120, Succeeded: 120}
	if final.Status != task.StatusCompleted || final.Counts != want {
		t.Fatalf("final: %s %+v; want completed %+v", final.Status, final.Counts, want)
	}
	checkBatches(t, tk.ID, ids)
	if n := f.faults.left(); n != 0 {
		t.Errorf("%d injected DynamoDB failures were never met", n)
	}
	noThrottlesLeft(t)
	devs := f.deviceStates(t, tk.ID)
	for _, id := range ids {
		if d := devs[id]; d == nil || d.Status != task.DeviceSucceeded {
			t.Errorf("device %s: %+v", id, d)
		}
	}
	if evs := f.finished(t, 1); len(evs) != 1 || evs[0].Status != task.StatusCompleted || evs[0].Counts.Succeeded != 120 {
		t.Errorf("events = %+v; want one completed event", evs)
	}
	f.noDeadLetters(t)
}

// noThrottlesLeft checks that the SSM server throttles nothing more: a read of each kind the
// test throttled goes through on its first attempt.
func noThrottlesLeft(t *testing.T) {
	t.Helper()
	client := ssmServer.Client(func(o *ssm.Options) { o.RetryMaxAttempts = 1 })
	if _, err := client.ListCommands(t.Context(), &ssm.ListCommandsInput{MaxResults: aws.Int32(1)}); err != nil {
		t.Errorf("ListCommands after the test: %v", err)
	}
	if _, err := client.ListCommandInvocations(t.Context(), &ssm.ListCommandInvocationsInput{MaxResults: aws.Int32(1)}); err != nil {
		t.Errorf("ListCommandInvocations after the test: %v", err)
	}
}
