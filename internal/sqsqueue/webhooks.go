package sqsqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/task"
)

// WebhookMessageVersion is the version of the webhook queue's message schema.
const WebhookMessageVersion = 1

// webhookMessage is the body of a message on the webhook queue: one webhook job, in a shape of
// its own so that renaming a field of task.WebhookJob does not change what is on the queue.
type webhookMessage struct {
	Version int        `json:"v"`
	Job     webhookJob `json:"job"`
}

type webhookJob struct {
	ID             string    `json:"id"`
	Type           string    `json:"type"`
	TaskID         string    `json:"taskId"`
	URL            string    `json:"url"`
	At             time.Time `json:"at"`
	Links          string    `json:"links,omitempty"`
	Payload        []byte    `json:"payload,omitempty"`
	Attempt        int       `json:"attempt"`
	FirstAttemptAt time.Time `json:"firstAttemptAt,omitzero"`
	NextAt         time.Time `json:"nextAt"`
}

// WebhookQueue puts webhook jobs on the webhook queue, each delivered when it is due: SQS
// holds a message back for at most MaxDelay, so a job due later comes back early, and the
// WebhookFunction puts it back until it is due (see awsapp). It implements
// engine.WebhookQueue.
type WebhookQueue struct {
	client API
	url    string
	now    func() time.Time
}

var _ engine.WebhookQueue = (*WebhookQueue)(nil)

// NewWebhookQueue returns a WebhookQueue that sends to the queue at queueURL through client;
// now is its clock (time.Now when nil).
func NewWebhookQueue(client API, queueURL string, now func() time.Time) *WebhookQueue {
	if now == nil {
		now = time.Now
	}
	return &WebhookQueue{client: client, url: queueURL, now: now}
}

// Put sends job, delayed until job.NextAt (at most MaxDelay).
func (q *WebhookQueue) Put(ctx context.Context, job task.WebhookJob) error {
	body, err := json.Marshal(webhookMessage{Version: WebhookMessageVersion, Job: webhookJob{ID: job.ID, Type: string(job.Type),
		TaskID: job.TaskID, URL: job.URL, At: job.At, Links: job.Links, Payload: job.Payload, Attempt: job.Attempt,
		FirstAttemptAt: job.FirstAttemptAt, NextAt: job.NextAt}})
	if err != nil {
		return fmt.Errorf("sqsqueue: encode webhook %s: %w", job.ID, err)
	}
	_, err = q.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     aws.String(q.url),
		MessageBody:  aws.String(string(body)),
		DelaySeconds: DelaySeconds(job.NextAt.Sub(q.now())),
	})
	if err != nil {
		return fmt.Errorf("sqsqueue: send webhook %s: %w", job.ID, err)
	}
	return nil
}

// DecodeWebhook parses a webhook queue message strictly, as Decode does an executor message:
// anything it cannot act on is an error wrapping engine.ErrMalformed.
func DecodeWebhook(body string) (task.WebhookJob, error) {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	var m webhookMessage
	if err := dec.Decode(&m); err != nil {
		return task.WebhookJob{}, fmt.Errorf("sqsqueue: decode webhook message: %w: %v", engine.ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return task.WebhookJob{}, fmt.Errorf("sqsqueue: decode webhook message: %w: data after the JSON object", engine.ErrMalformed)
	}
	j := m.Job
	switch {
	case m.Version != WebhookMessageVersion:
		return task.WebhookJob{}, fmt.Errorf("sqsqueue: webhook message version %d, want %d: %w", m.Version, WebhookMessageVersion, engine.ErrMalformed)
	case j.ID == "" || j.TaskID == "" || j.URL == "" || !task.WebhookType(j.Type).Valid():
		return task.WebhookJob{}, fmt.Errorf("sqsqueue: webhook message without an id, task, URL or known type: %w", engine.ErrMalformed)
	case j.Attempt < 0:
		return task.WebhookJob{}, fmt.Errorf("sqsqueue: webhook %s with attempt %d: %w", j.ID, j.Attempt, engine.ErrMalformed)
	}
	return task.WebhookJob{ID: j.ID, Type: task.WebhookType(j.Type), TaskID: j.TaskID, URL: j.URL, At: j.At, Links: j.Links,
		Payload: j.Payload, Attempt: j.Attempt, FirstAttemptAt: j.FirstAttemptAt, NextAt: j.NextAt}, nil
}

// HandleWebhooks is HandleBatch for the webhook queue: each record is one webhook job, handed
// to handle, with the same rules for failures, malformed messages and the deadline.
func HandleWebhooks(ctx context.Context, ev events.SQSEvent, handle func(context.Context, task.WebhookJob) error, log *slog.Logger, retry *Retry) events.SQSEventResponse {
	describe := func(j task.WebhookJob) []any {
		return []any{"task_id", j.TaskID, "event_id", j.ID, "attempt", j.Attempt}
	}
	return handleBatch(ctx, ev, DecodeWebhook, describe, handle, log, retry)
}
