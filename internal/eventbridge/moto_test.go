package eventbridge

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/task"
)

var nameSeq atomic.Int64

// motoBus is an event bus on moto with one rule per example pattern of the events page, each
// delivering to its own SQS queue.
type motoBus struct {
	eb     *eventbridge.Client
	sqs    *sqs.Client
	name   string
	queues map[string]string // pattern → queue URL
}

func newMotoBus(t *testing.T) motoBus {
	t.Helper()
	cfg := awstest.Config(t)
	ctx := context.Background()
	b := motoBus{eb: eventbridge.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg), queues: map[string]string{},
		name: fmt.Sprintf("fleetrun-%d-%d", time.Now().UnixNano(), nameSeq.Add(1))}
	if _, err := b.eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(b.name)}); err != nil {
		t.Fatalf("create event bus: %v", err)
	}
	i := 0
	for pattern := range docPatterns(t) {
		i++
		rule := fmt.Sprintf("%s-rule-%d", b.name, i)
		q, err := b.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(rule)})
		if err != nil {
			t.Fatalf("create queue: %v", err)
		}
		attrs, err := b.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		if err != nil {
			t.Fatalf("queue arn: %v", err)
		}
		if _, err := b.eb.PutRule(ctx, &eventbridge.PutRuleInput{Name: aws.String(rule), EventBusName: aws.String(b.name),
			EventPattern: aws.String(pattern)}); err != nil {
			t.Fatalf("put rule: %v", err)
		}
		if _, err := b.eb.PutTargets(ctx, &eventbridge.PutTargetsInput{Rule: aws.String(rule), EventBusName: aws.String(b.name),
			Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)])}}}); err != nil {
			t.Fatalf("put targets: %v", err)
		}
		b.queues[pattern] = aws.ToString(q.QueueUrl)
	}
	return b
}

// drain returns every event delivered to the queue at url, waiting up to a deadline for at
// least want of them, and then taking whatever else is there at once.
func (b motoBus) drain(t *testing.T, url string, want int) []events.EventBridgeEvent {
	t.Helper()
	var got []events.EventBridgeEvent
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := b.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		for _, m := range out.Messages {
			var ev events.EventBridgeEvent
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
				t.Fatalf("delivered body is not an event: %v", err)
			}
			got = append(got, ev)
			_, _ = b.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
		}
		if len(out.Messages) == 0 && (len(got) >= want || time.Now().After(deadline)) {
			return got
		}
		if len(out.Messages) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestMotoEventsReachTheDocumentedRules publishes one event per terminal status and checks that
// each example rule of the events page delivers exactly the statuses it names, with a detail
// that decodes strictly into the documented schema.
func TestMotoEventsReachTheDocumentedRules(t *testing.T) {
	t.Parallel()
	b := newMotoBus(t)
	p := New(b.eb, b.name, Options{})
	sent := map[task.Status]task.Notification{}
	for _, s := range []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusTimedOut, task.StatusCancelled} {
		n := notification(s, 12, 0)
		n.TaskID = "T-" + string(s)
		n.ID = task.NotificationID(n.TaskID, s)
		if err := p.Publish(context.Background(), n); err != nil {
			t.Fatalf("publish %s: %v", s, err)
		}
		sent[s] = n
	}
	for pattern, url := range b.queues {
		want := docPatterns(t)[pattern]
		evs := b.drain(t, url, len(want))
		var got []task.Status
		for _, ev := range evs {
			if ev.Source != Source || ev.DetailType != DetailType || len(ev.Resources) != 0 {
				t.Errorf("envelope: source %q detail-type %q resources %v", ev.Source, ev.DetailType, ev.Resources)
			}
			d := decodeStrict(t, string(ev.Detail))
			n, ok := sent[d.Status]
			if !ok {
				t.Errorf("delivered an event for %q, which was never published", d.Status)
				continue
			}
			if !ev.Time.Equal(n.CompletedAt) {
				t.Errorf("%s: event time %v, want completedAt %v", d.Status, ev.Time, n.CompletedAt)
			}
			wantDetail := Detail{
				SchemaVersion: 1, ID: n.TaskID + ":" + string(n.Status), TaskID: n.TaskID, Owner: n.Owner,
				Status: n.Status, Version: n.Version, CreatedAt: n.CreatedAt, CompletedAt: n.CompletedAt,
				ScriptURL: n.ScriptURL,
				Counts:    Counts{Total: 12, Succeeded: 6, Failed: 3, Cancelled: 3},
				Result: Result{SucceededDevices: n.Result.SucceededDevices, FailedDevices: n.Result.FailedDevices,
					CancelledDevices: n.Result.CancelledDevices, Reason: n.Result.Reason},
			}
			if !reflect.DeepEqual(d, wantDetail) {
				t.Errorf("%s: delivered detail\n got %+v\nwant %+v", d.Status, d, wantDetail)
			}
			got = append(got, d.Status)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("rule %s delivered %v, want %v", pattern, got, want)
		}
	}
}

// TestMotoLargeTaskIsAccepted publishes the event of a 10,000-device task with the longest ids
// a local task allows, and checks EventBridge takes it and a rule delivers it, trimmed.
func TestMotoLargeTaskIsAccepted(t *testing.T) {
	t.Parallel()
	b := newMotoBus(t)
	n := notification(task.StatusFailed, 10000, 128)
	p := New(b.eb, b.name, Options{})
	entry, err := p.Entry(n)
	if err != nil {
		t.Fatal(err)
	}
	if size := entrySize(entry); size >= MaxEntrySize {
		t.Fatalf("entry is %d bytes", size)
	}
	if err := p.Publish(context.Background(), n); err != nil {
		t.Fatalf("publish: %v", err)
	}
	for pattern, url := range b.queues {
		if !slices.Contains(docPatterns(t)[pattern], task.StatusFailed) {
			continue
		}
		evs := b.drain(t, url, 1)
		if len(evs) != 1 {
			t.Fatalf("rule %s delivered %d events, want 1", pattern, len(evs))
		}
		d := decodeStrict(t, string(evs[0].Detail))
		if d.Counts.Total != 10000 || !d.Result.Truncated || len(d.Result.SucceededDevices) == 0 ||
			len(d.Result.SucceededDevices) >= task.ResultListCap {
			t.Errorf("delivered: total %d, truncated %v, %d succeeded ids", d.Counts.Total, d.Result.Truncated, len(d.Result.SucceededDevices))
		}
	}
}
