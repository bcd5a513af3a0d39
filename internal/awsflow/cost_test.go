package awsflow

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmrun"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// dynamoWrites are the DynamoDB operations that write, as the counter names them.
var dynamoWrites = []string{"DynamoDB.TransactWriteItems", "DynamoDB.UpdateItem", "DynamoDB.BatchWriteItem",
	"DynamoDB.PutItem", "DynamoDB.DeleteItem"}

// cost is the AWS requests one fleetrun operation made, by "Service.Operation".
type cost map[string]int

func (c cost) total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func (c cost) writes() int {
	n := 0
	for _, op := range dynamoWrites {
		n += c[op]
	}
	return n
}

func (c cost) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
	}
	return strings.Join(parts, " ")
}

// measure runs op and returns the requests the app made meanwhile, logging them on one line.
func (f *flow) measure(t *testing.T, what string, op func()) cost {
	t.Helper()
	f.count.Reset()
	start := time.Now()
	op()
	took := time.Since(start)
	c := cost(f.count.Snapshot())
	t.Logf("%-44s %4d requests (%3d DynamoDB writes) in %5.2fs: %s", what, c.total(), c.writes(), took.Seconds(), c)
	return c
}

// TestRequestCounts counts the AWS requests of each operation that is priced: a submit, a
// status read, the dispatch of 100 and of 10,000 devices, the progress rounds of 100 devices,
// and a whole 100-device task with and without an id SSM does not know, and checks the aims: a submit is 2 requests whatever the fleet, a status read is 1,
// a dispatch sends one SendCommand per 50 devices, and a progress round writes in batches, far
// fewer writes than devices. Run with -v to see the table.
//
// ListCommands in a dispatch is the runner looking for commands already sent (see ssmrun); it
// pages through every command the SSM server holds from the last minute, other tests'
// included, so its count depends on what ran before.
func TestRequestCounts(t *testing.T) {
	f := newFlow(t)
	f.wireApp(t)
	ctx := t.Context()

	ids := f.devices(100)
	var tk *task.Task
	c := f.measure(t, "submit, 100 devices", func() { tk = f.submit(t, ids) })
	if c.total() != 2 || c["DynamoDB.TransactWriteItems"] != 1 || c["SQS.SendMessage"] != 1 {
		t.Errorf("submit made %s; want 2 requests: one TransactWriteItems, one SendMessage", c)
	}

	c = f.measure(t, "status", func() {
		got, err := f.engine.Get(ctx, caller, tk.ID)
		if err != nil || got.Status != task.StatusPending {
			t.Fatalf("Get = %+v, %v", got, err)
		}
	})
	if c.total() != 1 || c["DynamoDB.GetItem"] != 1 {
		t.Errorf("status made %s; want 1 GetItem", c)
	}

	c = f.measure(t, "dispatch, 100 devices", func() { f.handleOnly(t, engine.ActionDispatch) })
	if c["SSM.SendCommand"] != 2 || c["SQS.SendMessage"] != 1 {
		t.Errorf("dispatch made %s; want 2 SendCommand and 1 SendMessage (the first poll)", c)
	}
	if got := f.task(t, tk.ID); got.Status != task.StatusRunning {
		t.Fatalf("after dispatch the task is %s", got.Status)
	}

	// Each device's invocation is InProgress on the first ListCommandInvocations that sees it
	// and Success on the second (ssmtest.DefaultScript): one round starts all 100 devices, the
	// next finishes them and the task.
	// Under load the SDK may retry a ListCommandInvocations whose answer was slow; the retry
	// moves those invocations on once more, so some devices may already have finished.
	c = f.measure(t, "progress round, 100 devices start", func() { f.handleOnly(t, engine.ActionPoll) })
	if got := f.task(t, tk.ID); got.Counts.Running+got.Counts.Succeeded != 100 || got.Counts.Running == 0 {
		t.Fatalf("after the first round: %+v, want every device started", got.Counts)
	}
	if c.writes() >= len(ids)/10 {
		t.Errorf("a progress round of %d devices made %d DynamoDB writes (%s); want fewer than %d", len(ids), c.writes(), c, len(ids)/10)
	}
	if n := c["SSM.ListCommandInvocations"]; n < 2 {
		t.Errorf("the round listed invocations %d times, want one page per command (2), retries aside", n)
	}
	c = f.measure(t, "progress round, 100 devices finish the task", func() { f.handleOnly(t, engine.ActionPoll) })
	if got := f.task(t, tk.ID); got.Status != task.StatusCompleted || got.Counts.Succeeded != 100 {
		t.Fatalf("after the second round: %s %+v, want completed with 100 succeeded", got.Status, got.Counts)
	}
	if c.writes() >= len(ids)/10 {
		t.Errorf("the finishing round of %d devices made %d DynamoDB writes (%s); want fewer than %d", len(ids), c.writes(), c, len(ids)/10)
	}
	if c["EventBridge.PutEvents"] != 1 {
		t.Errorf("the finishing round published %d times, want 1", c["EventBridge.PutEvents"])
	}

	// A whole 100-device task, from its submit to its completion event, as the executor sees
	// it (SSM's own events, which the progress function applies, come on top), and the same
	// with one id SSM does not know: its batch of 50 is split until the id stands alone.
	for _, unknown := range []int{0, 1} {
		ids := f.devices(100)
		what := "100-device task, submit to completed"
		if unknown > 0 {
			ssmServer.Script(ids[42], ssmtest.Script{Outcome: ssmtest.Invalid})
			what = "100-device task, 1 id unknown to SSM"
		}
		var final *task.Task
		c = f.measure(t, what, func() {
			tk := f.submit(t, ids)
			final = f.runUntil(t, tk.ID, 10, terminal)
		})
		if final.Status != task.StatusCompleted || final.Counts.Succeeded != 100-unknown || final.Counts.Undeliverable != unknown {
			t.Errorf("%s: %s %+v", what, final.Status, final.Counts)
		}
		if limit := 1 + ssmrun.MaxSendCommands(50, unknown); c["SSM.SendCommand"] > limit {
			t.Errorf("%s: %d SendCommands, want at most %d", what, c["SSM.SendCommand"], limit)
		}
	}

	big := f.devices(10000)
	c = f.measure(t, "submit, 10,000 devices", func() { tk = f.submit(t, big) })
	if c.total() != 2 || c["DynamoDB.TransactWriteItems"] != 1 || c["SQS.SendMessage"] != 1 {
		t.Errorf("a 10,000-device submit made %s; want 2 requests", c)
	}
	c = f.measure(t, "dispatch, 10,000 devices", func() { f.handleOnly(t, engine.ActionDispatch) })
	if c["SSM.SendCommand"] != 200 || c["SQS.SendMessage"] != 1 {
		t.Errorf("dispatch made %s; want 200 SendCommand and 1 SendMessage", c)
	}
	checkBatches(t, tk.ID, big)
	f.noDeadLetters(t)
}
