// Package sqsqueue is the executor's queue on AWS: engine messages sent to an SQS standard queue
// and handed back, one Lambda batch at a time, to the executor.
//
// The queue is expected to have a redrive policy to a dead-letter queue. Nothing here deletes or
// moves a message by itself: the Lambda event source mapping deletes what a batch did not report
// as failed, and SQS moves a message that keeps coming back to the dead-letter queue once its
// receive count passes maxReceiveCount.
package sqsqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fleetrun/fleetrun/internal/engine"
)

// MaxDelay is the longest delay SQS accepts for one message (DelaySeconds 900).
const MaxDelay = 15 * time.Minute

// API is the part of the SQS client that Queue uses; *sqs.Client satisfies it.
type API interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Queue sends engine messages to one SQS queue. It implements engine.Queue.
type Queue struct {
	client API
	url    string
}

var _ engine.Queue = (*Queue)(nil)

// New returns a Queue that sends to the queue at queueURL through client.
func New(client API, queueURL string) *Queue {
	return &Queue{client: client, url: queueURL}
}

// Send sends m as JSON, delivered no sooner than delay from now. The delay is rounded up to whole
// seconds, because SQS counts DelaySeconds in seconds and delivering a poll early would only
// waste a poll. A delay longer than MaxDelay is clamped to MaxDelay: the message then arrives
// early, which is harmless because every executor action re-reads the task and a poll simply
// schedules the next one. A message that Decode would refuse is not sent at all.
func (q *Queue) Send(ctx context.Context, m engine.Message, delay time.Duration) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("sqsqueue: encode %s message for %s: %w", m.Action, m.TaskID, err)
	}
	if _, err := Decode(string(body)); err != nil {
		return fmt.Errorf("sqsqueue: refusing to send: %w", err)
	}
	_, err = q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     aws.String(q.url),
		MessageBody:  aws.String(string(body)),
		DelaySeconds: DelaySeconds(delay),
	})
	if err != nil {
		return fmt.Errorf("sqsqueue: send %s message for %s: %w", m.Action, m.TaskID, err)
	}
	return nil
}

// DelaySeconds converts a delay into SQS's DelaySeconds: rounded up to whole seconds, 0 for a
// negative delay, and at most MaxDelay.
func DelaySeconds(delay time.Duration) int32 {
	if delay <= 0 {
		return 0
	}
	if delay >= MaxDelay {
		return int32(MaxDelay / time.Second)
	}
	return int32(math.Ceil(delay.Seconds()))
}
