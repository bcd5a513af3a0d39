package sqsqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/fleetrun/fleetrun/internal/awstest"
	"github.com/fleetrun/fleetrun/internal/engine"
)

// testBundle is a queue with a dead-letter queue on moto.
type testBundle struct {
	client *sqs.Client
	url    string
	dlqURL string
	arn    string
}

var queueSeq atomic.Int64

// setup creates a queue whose redrive policy moves a message to its dead-letter queue after
// two receives, as the production template does with its own count.
func setup(t *testing.T) testBundle {
	t.Helper()
	cfg := awstest.Config(t)
	ctx := context.Background()
	client := sqs.NewFromConfig(cfg)
	name := fmt.Sprintf("fleetrun-%d-%d", time.Now().UnixNano(), queueSeq.Add(1))

	dlq, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatalf("create dead-letter queue: %v", err)
	}
	dlqAttrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("dead-letter queue arn: %v", err)
	}
	policy, _ := json.Marshal(map[string]string{
		"deadLetterTargetArn": dlqAttrs.Attributes[string(types.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     "2",
	})
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name),
		Attributes: map[string]string{string(types.QueueAttributeNameRedrivePolicy): string(policy)}})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("queue arn: %v", err)
	}
	return testBundle{client: client, url: aws.ToString(q.QueueUrl), dlqURL: aws.ToString(dlq.QueueUrl),
		arn: attrs.Attributes[string(types.QueueAttributeNameQueueArn)]}
}

// receive takes what is visible on queue url right now, without waiting, as Lambda's poller
// would and with the attributes Lambda passes on.
func (b testBundle) receive(t *testing.T, url string) []types.Message {
	t.Helper()
	out, err := b.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 0,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("receive from %s: %v", url, err)
	}
	return out.Messages
}

// event builds the SQS event Lambda would deliver for received messages.
func (b testBundle) event(msgs []types.Message) events.SQSEvent {
	var ev events.SQSEvent
	for _, m := range msgs {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes,
			EventSourceARN: b.arn, EventSource: "aws:sqs", AWSRegion: "us-east-1",
		})
	}
	return ev
}

// settle does what the Lambda event source mapping does with a batch response: it deletes the
// records that were not reported, and the reported ones return to the queue. Here they return at
// once rather than after the visibility timeout, so the test need not wait for it.
func (b testBundle) settle(t *testing.T, msgs []types.Message, resp events.SQSEventResponse) {
	t.Helper()
	ctx := context.Background()
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for _, m := range msgs {
		var err error
		if failed[aws.ToString(m.MessageId)] {
			_, err = b.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(b.url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
		} else {
			_, err = b.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(b.url), ReceiptHandle: m.ReceiptHandle})
		}
		if err != nil {
			t.Fatalf("settle %s: %v", aws.ToString(m.MessageId), err)
		}
	}
}

func TestMotoSendRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := New(b.client, b.url)
	want := engine.Message{Version: engine.MessageVersion, Action: engine.ActionPoll, TaskID: "01JDROUNDTRIP", Attempt: 2}
	if err := q.Send(context.Background(), want, 0); err != nil {
		t.Fatal(err)
	}
	msgs := b.receive(t, b.url)
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	got, err := Decode(aws.ToString(msgs[0].Body))
	if err != nil {
		t.Fatalf("received body does not decode: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestMotoDelayIsHonoured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	q := New(b.client, b.url)
	const delay = 2 * time.Second
	m := engine.Message{Version: engine.MessageVersion, Action: engine.ActionPoll, TaskID: "01JDDELAYED"}
	sent := time.Now()
	if err := q.Send(context.Background(), m, delay-500*time.Millisecond); err != nil { // rounds up to 2 s
		t.Fatal(err)
	}
	if msgs := b.receive(t, b.url); len(msgs) != 0 && time.Since(sent) < delay {
		t.Fatalf("a message delayed by %v was visible after %v", delay, time.Since(sent))
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		msgs := b.receive(t, b.url)
		if len(msgs) == 1 {
			if waited := time.Since(sent); waited < delay {
				t.Errorf("delivered after %v, before its delay of %v", waited, delay)
			}
			if got, err := Decode(aws.ToString(msgs[0].Body)); err != nil || !reflect.DeepEqual(got, m) {
				t.Errorf("delayed message = %+v, %v; want %+v", got, err, m)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the delayed message never arrived")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMotoHandleBatchAndRedrive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	q := New(b.client, b.url)
	for _, m := range []engine.Message{
		{Version: engine.MessageVersion, Action: engine.ActionDispatch, TaskID: "GOOD"},
		{Version: engine.MessageVersion, Action: engine.ActionPoll, TaskID: "FLAKY"},
	} {
		if err := q.Send(ctx, m, 0); err != nil {
			t.Fatal(err)
		}
	}
	const malformed = `{"v":1,"action":"reboot","taskId":"BAD"}`
	if _, err := b.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(b.url), MessageBody: aws.String(malformed)}); err != nil {
		t.Fatal(err)
	}

	// FLAKY fails on its first delivery only; GOOD always succeeds.
	calls := map[string]int{}
	handle := func(_ context.Context, m engine.Message) error {
		calls[m.TaskID]++
		if m.TaskID == "FLAKY" && calls[m.TaskID] == 1 {
			return fmt.Errorf("runner unavailable")
		}
		return nil
	}
	log := slog.New(slog.DiscardHandler)

	msgs := b.receive(t, b.url)
	if len(msgs) != 3 {
		t.Fatalf("first receive got %d messages, want 3", len(msgs))
	}
	idOf := map[string]string{} // body's task → message id
	for _, m := range msgs {
		switch body := aws.ToString(m.Body); {
		case body == malformed:
			idOf["BAD"] = aws.ToString(m.MessageId)
		case strings.Contains(body, "FLAKY"):
			idOf["FLAKY"] = aws.ToString(m.MessageId)
		default:
			idOf["GOOD"] = aws.ToString(m.MessageId)
		}
	}
	resp := HandleBatch(ctx, b.event(msgs), handle, log, nil)
	got := failedIDs(resp)
	slices.Sort(got)
	want := []string{idOf["BAD"], idOf["FLAKY"]}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("first batch failures = %v, want %v (BAD and FLAKY)", got, want)
	}
	b.settle(t, msgs, resp)

	// Keep delivering until the queue is empty: FLAKY succeeds on its second delivery, BAD is
	// reported every time and is moved to the dead-letter queue after maxReceiveCount.
	deadline := time.Now().Add(20 * time.Second)
	for {
		msgs := b.receive(t, b.url)
		if len(msgs) == 0 {
			break
		}
		b.settle(t, msgs, HandleBatch(ctx, b.event(msgs), handle, log, nil))
		if time.Now().After(deadline) {
			t.Fatalf("the queue never drained")
		}
	}
	if calls["GOOD"] != 1 || calls["FLAKY"] != 2 || calls["BAD"] != 0 {
		t.Errorf("handler calls = %v, want GOOD 1, FLAKY 2, BAD 0", calls)
	}
	dead := b.receive(t, b.dlqURL)
	if len(dead) != 1 || aws.ToString(dead[0].Body) != malformed {
		var bodies []string
		for _, m := range dead {
			bodies = append(bodies, aws.ToString(m.Body))
		}
		t.Fatalf("dead-letter queue holds %q, want only the malformed message", bodies)
	}
}
