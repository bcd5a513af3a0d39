package awsapp

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/internal/engine"
)

func TestExecutorReportsFailuresAndKeepsTimeInReserve(t *testing.T) {
	t.Parallel()
	lambdaDeadline := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), lambdaDeadline)
	defer cancel()
	var deadlines []time.Time
	handle := func(ctx context.Context, m engine.Message) error {
		d, _ := ctx.Deadline()
		deadlines = append(deadlines, d)
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
	resp, err := executor(handle, slog.New(slog.DiscardHandler), nil)(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, f := range resp.BatchItemFailures {
		failed = append(failed, f.ItemIdentifier)
	}
	if !slices.Equal(failed, []string{"busy", "malformed"}) {
		t.Errorf("batch item failures = %v, want busy and malformed", failed)
	}
	want := lambdaDeadline.Add(-ExecutorReserve)
	if len(deadlines) != 2 || !deadlines[0].Equal(want) || !deadlines[1].Equal(want) {
		t.Errorf("messages were handled with deadlines %v, want %v", deadlines, want)
	}
}
