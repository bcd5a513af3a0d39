package withsqs_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withsqs"
	"github.com/fleetrun/fleetrun/internal/engine"
)

// TestQueuesReportsFailedAndMalformedMessages: the executor's batches are handled by sqsqueue's
// rules: a message that failed and one that is malformed are reported, the rest deleted.
func TestQueuesReportsFailedAndMalformedMessages(t *testing.T) {
	t.Parallel()
	a := awsapp.New(awsapp.Config{TableName: "t", QueueURL: "https://sqs.example/q"}, aws.Config{Region: "us-east-1"},
		slog.New(slog.DiscardHandler), nil, withsqs.Queues)
	if a.Parts.Queue == nil || a.Parts.HandleQueue == nil || a.Parts.Webhooks != nil {
		t.Fatalf("parts %+v: want the executor's queue and no webhook queue", a.Parts)
	}
	handle := func(_ context.Context, m engine.Message) error {
		if m.TaskID == "t-busy" {
			return errors.New("throttled")
		}
		return nil
	}
	batch := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "ok", Body: `{"v":1,"action":"poll","taskId":"t-1","attempt":2}`},
		{MessageId: "busy", Body: `{"v":1,"action":"dispatch","taskId":"t-busy","attempt":0}`},
		{MessageId: "malformed", Body: `{"v":1,"action":"explode","taskId":"t-2"}`},
	}}
	resp := a.Parts.HandleQueue(t.Context(), batch, handle)
	var failed []string
	for _, f := range resp.BatchItemFailures {
		failed = append(failed, f.ItemIdentifier)
	}
	if !slices.Equal(failed, []string{"busy", "malformed"}) {
		t.Errorf("batch item failures = %v, want busy and malformed", failed)
	}
}
