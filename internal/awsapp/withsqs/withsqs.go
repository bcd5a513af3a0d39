// Package withsqs wires SQS into a function's App: the executor's queue and, with a
// WEBHOOK_QUEUE_URL, the webhook queue, for sending and for handling the batches Lambda
// delivers from them. Every function but the readers (StatusFunction, OutputFunction,
// InventoryFunction) names it.
package withsqs

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/sqsqueue"
	"github.com/fleetrun/fleetrun/internal/task"
)

// Queues is the SQS service of awsapp. A message that failed is delivered again after
// sqsqueue.DefaultBackoff rather than the queue's visibility timeout.
func Queues(a *awsapp.App) {
	client := sqs.NewFromConfig(a.SDK)
	if url := a.Config.QueueURL; url != "" {
		a.Parts.Queue = sqsqueue.New(client, url)
		retry := &sqsqueue.Retry{API: client, QueueURL: url}
		a.Parts.HandleQueue = func(ctx context.Context, ev events.SQSEvent, handle func(context.Context, engine.Message) error) events.SQSEventResponse {
			return sqsqueue.HandleBatch(ctx, ev, handle, a.Log, retry)
		}
	}
	if url := a.Config.WebhookQueueURL; url != "" {
		a.Parts.Webhooks = sqsqueue.NewWebhookQueue(client, url, nil)
		retry := &sqsqueue.Retry{API: client, QueueURL: url}
		a.Parts.HandleWebhooks = func(ctx context.Context, ev events.SQSEvent, handle func(context.Context, task.WebhookJob) error) events.SQSEventResponse {
			return sqsqueue.HandleWebhooks(ctx, ev, handle, a.Log, retry)
		}
	}
}
