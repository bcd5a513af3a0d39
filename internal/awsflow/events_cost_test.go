package awsflow

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// TestEventPathRequestCounts counts the AWS requests and Lambda invocations of SSM's
// invocation events for 100-device tasks, on their way through the progress queue to
// ProgressFunction (App.Progress), and checks the aims per 100 devices: the events of a round
// share one invocation, no invocation is read on its own, and each round costs a handful of
// DynamoDB writes where one event per invocation costs one transaction per event.
//
// Lambda hands the function what the queue gathered within its batching window; here every
// device's InProgress event arrives in one batch and every Success event in the next, as they
// do when the script runs longer than the window. The same events handed over one per
// invocation (what a rule targeting the function directly did) are measured beside them, on a
// second task, for the comparison docs/cost.md draws. Run with -v to see the table.
func TestEventPathRequestCounts(t *testing.T) {
	type figures struct {
		invocations int
		cost        cost
	}
	// run submits a task on a flow of its own, whose queue holds only its messages, and hands
	// its events over perInvocation to a batch.
	run := func(what string, perInvocation int) (start, finish figures) {
		f := newFlow(t)
		progress := f.wireApp(t).Progress()
		readSSM := ssm.NewFromConfig(f.base) // the test's own reads, neither counted nor faulted
		defer f.noDeadLetters(t)
		ids := f.devices(100)
		tk := f.submit(t, ids)
		f.handleOnly(t, engine.ActionDispatch)
		// The agents pick the commands up: SSM reports every device in progress.
		for _, c := range commands(tk.ID) {
			if _, err := readSSM.ListCommandInvocations(t.Context(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(c.CommandID)}); err != nil {
				t.Fatal(err)
			}
		}
		deliver := func(round string, status string, fig *figures) {
			evs := invocationEvents(t, tk.ID, status)
			if len(evs) != len(ids) {
				t.Fatalf("SSM sent %d %s events for %d devices", len(evs), status, len(ids))
			}
			fig.cost = f.measure(t, fmt.Sprintf("%s, 100 devices %s", what, round), func() {
				for batch := range slices.Chunk(evs, perInvocation) {
					fig.invocations++
					resp, err := progress(t.Context(), sqsBatch(batch))
					if err != nil || len(resp.BatchItemFailures) > 0 {
						t.Fatalf("progress: %v, failures %+v", err, resp.BatchItemFailures)
					}
				}
			})
			t.Logf("%-44s %4d invocations", "", fig.invocations)
		}
		deliver("start", ssmtest.StatusInProgress, &start)
		if got := f.task(t, tk.ID); got.Counts.Running != len(ids) {
			t.Fatalf("after the InProgress events: %+v, want every device running", got.Counts)
		}
		ssmServer.Settle()
		deliver("finish", ssmtest.StatusSuccess, &finish)
		if got := f.task(t, tk.ID); got.Status != task.StatusCompleted || got.Counts.Succeeded != len(ids) {
			t.Fatalf("after the Success events: %s %+v, want completed with %d succeeded", got.Status, got.Counts, len(ids))
		}
		return start, finish
	}

	start, finish := run("events batched", 1000)
	// The finishing round also ends the task: its end transition, the publish mark and the
	// expiry of its items are three writes of their own.
	for _, fig := range []struct {
		figures
		writes int
	}{{start, 3}, {finish, 6}} {
		if fig.invocations != 1 || fig.cost["SSM.GetCommandInvocation"] != 0 || fig.cost.writes() > fig.writes {
			t.Errorf("a batched round: %d invocations, %s; want 1 invocation, no GetCommandInvocation, at most %d DynamoDB writes",
				fig.invocations, fig.cost, fig.writes)
		}
	}
	if n := finish.cost["SSM.ListCommandInvocations"]; n < 2 || n > 4 {
		t.Errorf("the finishing round listed invocations %d times; want one page per command (2), retries aside", n)
	}
	if start.cost["SSM.ListCommandInvocations"] != 0 || finish.cost["EventBridge.PutEvents"] != 1 {
		t.Errorf("InProgress events read SSM (%s), or the task was published %d times", start.cost, finish.cost["EventBridge.PutEvents"])
	}

	single, singleFinish := run("one event per invocation", 1)
	if single.invocations != 100 || singleFinish.invocations != 100 ||
		single.cost.writes()+singleFinish.cost.writes() < 10*(start.cost.writes()+finish.cost.writes()) {
		t.Errorf("one event per invocation: %d+%d invocations, %d+%d writes; batched: %d+%d writes",
			single.invocations, singleFinish.invocations, single.cost.writes(), singleFinish.cost.writes(), start.cost.writes(), finish.cost.writes())
	}
}

// invocationEvents returns SSM's events of the given status for a task's commands, as
// EventBridge delivers them to the progress queue.
func invocationEvents(t *testing.T, taskID, status string) []json.RawMessage {
	t.Helper()
	ids := map[string]bool{}
	for _, c := range commands(taskID) {
		ids[c.CommandID] = true
	}
	var out []json.RawMessage
	for _, raw := range ssmServer.Events() {
		var ev ssmtest.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ids[ev.Detail.CommandID] && strings.EqualFold(ev.Detail.Status, status) {
			out = append(out, raw)
		}
	}
	return out
}

// sqsBatch is the batch Lambda hands ProgressFunction for evs.
func sqsBatch(evs []json.RawMessage) events.SQSEvent {
	recs := make([]events.SQSMessage, len(evs))
	for i, e := range evs {
		recs[i] = events.SQSMessage{MessageId: fmt.Sprintf("event-%d", i), Body: string(e), EventSource: "aws:sqs"}
	}
	return events.SQSEvent{Records: recs}
}
