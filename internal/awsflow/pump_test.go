package awsflow

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/fleetrun/fleetrun/internal/clocktest"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/sqsqueue"
	"github.com/fleetrun/fleetrun/internal/task"
)

// The executor's event source mapping in template.yaml: how many records a batch holds, and
// how long the function may run.
const (
	batchSize       = 10
	executorTimeout = 120 * time.Second
)

// sentMessage is an executor message the app sent, with the delay it asked SQS for.
type sentMessage struct {
	engine.Message
	DelaySeconds int32
}

// sentLog records every message the app sends to SQS and then sends it with no delay.
//
// The engine schedules polls with DelaySeconds (5 s, then backing off to a minute). Waiting
// for them would make every test last minutes; re-sending them, or building the executor's
// event from what was sent, would hand the executor something that did not come through the
// queue. Instead the delay is recorded, so that tests can check what the engine asked for,
// and taken off the request, so that the message itself still goes through the real queue on
// moto and reaches the executor the way Lambda delivers it: received, with its receipt handle
// and receive count, deleted or redelivered according to the batch response. It is as if the
// delay had passed at once; nothing the executor does depends on when a message arrives, only
// on the clock it reads. That SQS honours DelaySeconds is sqsqueue's own test.
type sentLog struct {
	mu   sync.Mutex
	msgs []sentMessage
}

func (l *sentLog) register(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("awsflow.sentLog",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if p, ok := in.Parameters.(*sqs.SendMessageInput); ok {
				if m, err := sqsqueue.Decode(aws.ToString(p.MessageBody)); err == nil {
					l.mu.Lock()
					l.msgs = append(l.msgs, sentMessage{Message: m, DelaySeconds: p.DelaySeconds})
					l.mu.Unlock()
				}
				undelayed := *p
				undelayed.DelaySeconds = 0
				in.Parameters = &undelayed
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// of returns the messages sent with action a, in the order sent.
func (l *sentLog) of(a engine.Action) []sentMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sentMessage
	for _, m := range l.msgs {
		if m.Action == a {
			out = append(out, m)
		}
	}
	return out
}

// delivery is one batch the pump handed to the executor.
type delivery struct {
	records []events.SQSMessage
	failed  map[string]bool
}

// messages decodes a delivery's records, each with whether the executor reported it failed and
// how many times SQS had delivered it.
func (d delivery) messages(t *testing.T) []deliveredMessage {
	t.Helper()
	var out []deliveredMessage
	for _, r := range d.records {
		m, err := sqsqueue.Decode(r.Body)
		if err != nil {
			t.Fatalf("delivered a malformed message %q: %v", r.Body, err)
		}
		out = append(out, deliveredMessage{Message: m, Failed: d.failed[r.MessageId], ReceiveCount: r.Attributes["ApproximateReceiveCount"]})
	}
	return out
}

// deliveredMessage is one message the pump delivered, as the executor saw it.
type deliveredMessage struct {
	engine.Message
	Failed       bool
	ReceiveCount string
}

// delivered returns every message the pump delivered, in order.
func (f *flow) delivered(t *testing.T) []deliveredMessage {
	t.Helper()
	var out []deliveredMessage
	for _, d := range f.deliveries {
		out = append(out, d.messages(t)...)
	}
	return out
}

// deliver is Lambda's event source mapping, once: it receives what the executor queue holds,
// up to a batch, hands it to the executor as an SQS event within the function's timeout, and
// then deletes the records the response did not report. The reported ones are made visible
// again at once, where SQS would wait for the visibility timeout; moto counts the receive, and
// moves a message to the dead-letter queue after maxReceiveCount. It returns the delivery,
// empty when the queue was.
func (f *flow) deliver(t *testing.T) delivery {
	t.Helper()
	ctx := context.Background()
	out, err := f.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(f.queueURL),
		MaxNumberOfMessages: batchSize, WaitTimeSeconds: 0,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
	if err != nil {
		t.Fatalf("receive from the executor queue: %v", err)
	}
	if len(out.Messages) == 0 {
		return delivery{}
	}
	var ev events.SQSEvent
	for _, m := range out.Messages {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes,
			EventSource: "aws:sqs", EventSourceARN: f.queueARN, AWSRegion: f.base.Region,
		})
	}
	runCtx, cancel := context.WithTimeout(t.Context(), executorTimeout)
	resp, err := f.executor(runCtx, ev)
	cancel()
	if err != nil {
		t.Fatalf("the executor failed the whole batch: %v", err)
	}
	d := delivery{records: ev.Records, failed: map[string]bool{}}
	for _, fail := range resp.BatchItemFailures {
		d.failed[fail.ItemIdentifier] = true
	}
	for _, r := range ev.Records {
		if d.failed[r.MessageId] {
			_, err = f.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(f.queueURL),
				ReceiptHandle: aws.String(r.ReceiptHandle), VisibilityTimeout: 0})
		} else {
			_, err = f.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(f.queueURL), ReceiptHandle: aws.String(r.ReceiptHandle)})
		}
		if err != nil {
			t.Fatalf("settle message %s: %v", r.MessageId, err)
		}
	}
	f.deliveries = append(f.deliveries, d)
	return d
}

// deliverNext delivers the next batch, waiting a little for one if the queue looks empty
// (a message made visible again may take a moment to show), and fails the test if none comes.
func (f *flow) deliverNext(t *testing.T) delivery {
	t.Helper()
	var d delivery
	clocktest.Eventually(t, 3*time.Second, func() error {
		if d = f.deliver(t); len(d.records) == 0 {
			return errors.New("the executor queue is empty")
		}
		return nil
	})
	return d
}

// handleOnly delivers the next batch and checks it was exactly one message with action a, and
// that the executor handled it.
func (f *flow) handleOnly(t *testing.T, a engine.Action) {
	t.Helper()
	msgs := f.deliverNext(t).messages(t)
	if len(msgs) != 1 || msgs[0].Action != a || msgs[0].Failed {
		t.Fatalf("delivered %+v; want one %s message, handled", msgs, a)
	}
}

// runUntil delivers batches until the task satisfies done, and returns it. It fails the test
// when the queue runs dry first or after maxBatches batches.
func (f *flow) runUntil(t *testing.T, id string, maxBatches int, done func(*task.Task) bool) *task.Task {
	t.Helper()
	for range maxBatches {
		if tk := f.task(t, id); done(tk) {
			return tk
		}
		f.deliverNext(t)
	}
	tk := f.task(t, id)
	if !done(tk) {
		t.Fatalf("after %d batches the task is %s with %+v", maxBatches, tk.Status, tk.Counts)
	}
	return tk
}

// drain delivers batches until the executor queue is empty, which it is once every task it
// carries is finished: a finished task's messages send nothing further.
func (f *flow) drain(t *testing.T) {
	t.Helper()
	for range 50 {
		if len(f.deliver(t).records) == 0 {
			return
		}
	}
	t.Fatalf("the executor queue did not drain in 50 batches")
}

// terminal is a condition for runUntil.
func terminal(tk *task.Task) bool { return tk.Status.Terminal() }
