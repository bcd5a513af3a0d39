package awsflow

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/ssmtest"
	"github.com/fleetrun/fleetrun/internal/task"
)

// sweepPeriod is SweeperFunction's schedule in template.yaml.
const sweepPeriod = time.Minute

// newSweepFlow is a flow with an SSM server of its own, both on a clock the test moves,
// starting on a whole minute; the test wires it once it has scripted the server.
func newSweepFlow(t *testing.T) (*flow, time.Time, *clocktest.Clock) {
	t.Helper()
	f := newFlow(t)
	start := time.Now().UTC().Truncate(time.Minute)
	clk := clocktest.New(start)
	f.ssm = ssmtest.Start(t)
	f.ssm.SetNow(clk.Now)
	return f, start, clk
}

// purge deletes every message the executor queue holds, as if they had been lost.
func (f *flow) purge(t *testing.T) int {
	t.Helper()
	n := 0
	for {
		out, err := f.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.queueURL),
			MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if len(out.Messages) == 0 {
			return n
		}
		for _, m := range out.Messages {
			if _, err := f.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(f.queueURL),
				ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			n++
		}
	}
}

// deliverUpTo delivers at most n batches, fewer if the queue runs dry.
func (f *flow) deliverUpTo(t *testing.T, n int) {
	t.Helper()
	for range n {
		if len(f.deliver(t).records) == 0 {
			return
		}
	}
}

// sweep runs SweeperFunction's sweep and checks that it read the index, never the table.
func (f *flow) sweep(t *testing.T) {
	t.Helper()
	f.count.Reset()
	if _, err := f.engine.Sweep(t.Context()); err != nil {
		t.Logf("sweep: %v", err)
	}
	if c := f.count.Snapshot(); c["DynamoDB.Scan"] != 0 || c["DynamoDB.Query"] == 0 {
		t.Errorf("the sweep made %v; want Queries of the index and no Scan", c)
	}
}

// invariant checks the promise of the sweep: no task stays unfinished longer than its
// deadline plus two sweep periods. It returns whether every task has finished.
func (f *flow) invariant(t *testing.T, now time.Time, ids ...string) bool {
	t.Helper()
	done := true
	for _, id := range ids {
		tk := f.task(t, id)
		if tk.Status.Terminal() {
			continue
		}
		done = false
		deadline := tk.CreatedAt.Add(time.Duration(tk.Request.TimeoutSeconds) * time.Second)
		if d := tk.Deadline(); !d.IsZero() {
			deadline = d
		}
		if now.After(deadline.Add(2 * sweepPeriod)) {
			t.Fatalf("at %v task %s is still %s, past its deadline %v and two sweep periods", now, id, tk.Status, deadline)
		}
	}
	return done
}

// TestSweepEndsTasksWhoseMessagesAreLost runs two tasks whose executor messages are all
// deleted: one is dispatched first and its devices never finish, the other is never
// dispatched. Minute by minute on a moved clock, the sweep re-drives both when their leases
// run out (the re-drives are deleted too), then ends each at its deadline and DeadlineGrace:
// the running one timed_out, with its devices timed out and its command cancelled, the pending
// one failed with the reason. Neither stays unfinished past its deadline and two sweep
// periods, and no sweep scans the table.
func TestSweepEndsTasksWhoseMessagesAreLost(t *testing.T) {
	t.Parallel()
	f, start, clk := newSweepFlow(t)
	f.ssm.SetDefault(ssmtest.Script{Outcome: ssmtest.Never})
	f.wireWithClock(t, clk.Now)
	running := f.submit(t, f.devices(3), func(r *task.Draft) { r.TimeoutSeconds = new(600) })
	f.handleOnly(t, engine.ActionDispatch)
	pending := f.submit(t, f.devices(2), func(r *task.Draft) { r.TimeoutSeconds = new(300) })
	f.purge(t)

	redriven := 0
	for minute := 1; ; minute++ {
		clk.Set(start.Add(time.Duration(minute) * sweepPeriod))
		f.sweep(t)
		redriven += f.purge(t)
		if f.invariant(t, clk.Now(), running.ID, pending.ID) {
			break
		}
		if minute > 30 {
			t.Fatal("the tasks never finished")
		}
	}
	if redriven == 0 {
		t.Error("the sweep never re-drove a task")
	}
	r := f.task(t, running.ID)
	if r.Status != task.StatusTimedOut || r.Counts.TimedOut != 3 || r.Result == nil || r.Result.Reason == "" {
		t.Errorf("the running task: %s %+v %+v; want timed_out with its 3 devices timed out", r.Status, r.Counts, r.Result)
	}
	if cmds := commandsOn(f.ssm, running.ID); len(cmds) != 1 || !cmds[0].Cancelled {
		t.Errorf("the running task's commands %+v; want its one command cancelled", cmds)
	}
	p := f.task(t, pending.ID)
	if p.Status != task.StatusFailed || p.Result == nil || p.Result.Reason != "the task could not be dispatched within its timeout of 300s" {
		t.Errorf("the pending task: %s %+v; want failed, not dispatched in time", p.Status, p.Result)
	}
	if evs := f.finished(t, 2); len(evs) != 2 {
		t.Errorf("%d Task Finished events, want 2", len(evs))
	}
}

// TestSweepCarriesTasksThroughASendCommandOutage runs two tasks while SSM fails every
// SendCommand for ten minutes (on a clock the test moves): their dispatches fail, come back
// after backoffs and end in the dead-letter queue, and the sweep re-drives them. The task
// with half an hour left runs as soon as SSM takes commands again and completes, with each
// device sent once; the one with five minutes times out at its deadline. Neither stays
// unfinished past its deadline and two sweep periods, and no sweep scans the table.
func TestSweepCarriesTasksThroughASendCommandOutage(t *testing.T) {
	t.Parallel()
	f, start, clk := newSweepFlow(t)
	f.ssm.FailUntil(ssmtest.OpSendCommand, start.Add(10*time.Minute), http.StatusInternalServerError,
		"InternalServerError", "An error occurred on the server side.")
	f.wireWithClock(t, clk.Now)
	long := f.submit(t, f.devices(60), func(r *task.Draft) { r.TimeoutSeconds = new(1800) })
	short := f.submit(t, f.devices(2), func(r *task.Draft) { r.TimeoutSeconds = new(300) })
	f.deliverUpTo(t, 20)

	var completedAt time.Time
	for minute := 1; ; minute++ {
		clk.Set(start.Add(time.Duration(minute) * sweepPeriod))
		f.sweep(t)
		f.deliverUpTo(t, 20)
		if completedAt.IsZero() && f.task(t, long.ID).Status.Terminal() {
			completedAt = clk.Now()
		}
		if f.invariant(t, clk.Now(), long.ID, short.ID) {
			break
		}
		if minute > 40 {
			t.Fatal("the tasks never finished")
		}
	}
	l := f.task(t, long.ID)
	if l.Status != task.StatusCompleted || l.Counts.Succeeded != 60 {
		t.Errorf("the long task: %s %+v; want completed with 60 succeeded", l.Status, l.Counts)
	}
	t.Logf("SendCommand failed until +10m; the long task completed by +%v, the short one ended %s",
		completedAt.Sub(start), f.task(t, short.ID).Status)
	sent := map[string]int{}
	for _, c := range commandsOn(f.ssm, long.ID) {
		for _, id := range c.InstanceIDs {
			sent[id]++
		}
	}
	for id, n := range sent {
		if n != 1 {
			t.Errorf("%s was sent %d times", id, n)
		}
	}
	if len(sent) != 60 {
		t.Errorf("%d devices sent, want 60", len(sent))
	}
	if s := f.task(t, short.ID); s.Status != task.StatusTimedOut {
		t.Errorf("the short task: %s %+v; want timed_out", s.Status, s.Result)
	}
}

// TestSweepCostAtAThousandOpenTasks measures what one sweep costs with 1,000 unfinished tasks
// in flight: with none due, a single Query of the index that reads no item; with some due, one
// GetItem, one lease renewal and one message for each of those, whatever the number in flight.
// No sweep scans the table. Run with -v to see the figures.
func TestSweepCostAtAThousandOpenTasks(t *testing.T) {
	t.Parallel()
	f := newFlow(t)
	start := time.Now().UTC().Truncate(time.Minute)
	clk := clocktest.New(start)
	f.wireWithClock(t, clk.Now)
	ctx := t.Context()
	// One task is created by the store; the rest are copies of its item under ids of their own,
	// written with BatchWriteItem: moto copies the whole table on every TransactWriteItems,
	// which would make a thousand CreateTask calls take minutes.
	model := &task.Task{ID: engine.NewIDAt(start), Owner: owner, Status: task.StatusPending, Version: 1, CreatedAt: start,
		UpdatedAt: start, Lease: start.Add(2 * time.Minute), CurrentStep: "queued", Counts: task.Counts{Total: 1, Pending: 1},
		Request: task.Request{DeviceIDs: []string{"i-0123456789abcdef0"}, ScriptURL: scriptURL, Args: []string{},
			TimeoutSeconds: 3600, DeliveryTimeoutSeconds: 600, MaxConcurrency: "50", MaxErrors: "100%"}}
	if _, _, err := f.reader.CreateTask(ctx, model, nil); err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(f.base)
	got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.table),
		Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "TASK#" + model.ID},
			"sk": &ddbtypes.AttributeValueMemberS{Value: "TASK"}}})
	if err != nil || got.Item == nil {
		t.Fatalf("read the model task's item: %v", err)
	}
	create := func(n int, lease time.Time) {
		t.Helper()
		var writes []ddbtypes.WriteRequest
		for range n {
			id := engine.NewIDAt(start)
			item := maps.Clone(got.Item)
			for k, v := range map[string]string{"pk": "TASK#" + id, "id": id,
				"gsi1sk": start.Format("2006-01-02T15:04:05.000000000Z") + "#" + id,
				"gsi2sk": lease.Format("2006-01-02T15:04:05.000000000Z") + "#" + id} {
				item[k] = &ddbtypes.AttributeValueMemberS{Value: v}
			}
			item["lease"] = &ddbtypes.AttributeValueMemberN{Value: fmt.Sprint(lease.UnixNano())}
			writes = append(writes, ddbtypes.WriteRequest{PutRequest: &ddbtypes.PutRequest{Item: item}})
		}
		for batch := range slices.Chunk(writes, 25) {
			if _, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
				RequestItems: map[string][]ddbtypes.WriteRequest{f.table: batch}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create(999, model.Lease)
	if open, err := f.reader.Due(ctx, start.Add(time.Hour), 2000); err != nil || len(open) != 1000 {
		t.Fatalf("the index holds %d open tasks, %v; want 1,000", len(open), err)
	}
	c := f.measure(t, "sweep, 1,000 open tasks, none due", func() {
		if n, err := f.engine.Sweep(ctx); n != 0 || err != nil {
			t.Errorf("Sweep = %d, %v; want nothing to do", n, err)
		}
	})
	if c.total() != 1 || c["DynamoDB.Query"] != 1 {
		t.Errorf("a sweep with nothing due made %s; want one Query", c)
	}
	create(5, start.Add(-time.Minute))
	c = f.measure(t, "sweep, 1,005 open tasks, 5 due", func() {
		if n, err := f.engine.Sweep(ctx); n != 5 || err != nil {
			t.Errorf("Sweep = %d, %v; want 5 re-driven", n, err)
		}
	})
	if c["DynamoDB.Query"] != 1 || c["DynamoDB.GetItem"] != 5 || c["DynamoDB.UpdateItem"] != 5 || c["SQS.SendMessage"] != 5 || c["DynamoDB.Scan"] != 0 {
		t.Errorf("a sweep with 5 due made %s; want 1 Query, and 5 GetItem, UpdateItem and SendMessage", c)
	}
	f.purge(t)
}
