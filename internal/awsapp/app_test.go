package awsapp

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/internal/engine"
	"github.com/fleetrun/fleetrun/internal/webhook"
)

// TestExecutorKeepsTimeInReserve: the executor's queue handler runs under a deadline
// ExecutorReserve before the function's own, and its answer is the function's.
func TestExecutorKeepsTimeInReserve(t *testing.T) {
	t.Parallel()
	lambdaDeadline := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), lambdaDeadline)
	defer cancel()
	var deadline time.Time
	want := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: "busy"}}}
	a := &App{Parts: Parts{HandleQueue: func(ctx context.Context, _ events.SQSEvent, _ func(context.Context, engine.Message) error) events.SQSEventResponse {
		deadline, _ = ctx.Deadline()
		return want
	}}}
	got, err := a.Executor()(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "busy"}}})
	if err != nil || len(got.BatchItemFailures) != 1 || got.BatchItemFailures[0].ItemIdentifier != "busy" {
		t.Errorf("Executor = %+v, %v; want the queue handler's answer", got, err)
	}
	if !deadline.Equal(lambdaDeadline.Add(-ExecutorReserve)) {
		t.Errorf("the batch was handled with deadline %v, want %v", deadline, lambdaDeadline.Add(-ExecutorReserve))
	}
}

// TestAFunctionWithoutAServiceFailsLoudly: a function that did not name a service gets
// stand-ins that fail with an error naming it, and still paces Retry-After by polls.
func TestAFunctionWithoutAServiceFailsLoudly(t *testing.T) {
	t.Parallel()
	a := &App{}
	if _, err := a.Executor()(t.Context(), events.SQSEvent{}); err == nil {
		t.Error("an executor without SQS handled a batch")
	}
	m := missing{"SSM runner"}
	if err := m.Start(t.Context(), nil); err == nil || err.Error() != "awsapp: this function does not wire the SSM runner" {
		t.Errorf("Start = %v", err)
	}
	var r engine.Runner = m
	if _, polled := r.(engine.PolledRunner); !polled {
		t.Error("the stand-in runner is not polled: Retry-After would lose its cadence")
	}
}

// TestTheWebhookSecretIsReadOnFirstUse: nothing is read while wiring; a failed read is tried
// again on the next delivery, and a secret read once is kept.
func TestTheWebhookSecretIsReadOnFirstUse(t *testing.T) {
	t.Parallel()
	reads := 0
	s := &secretOnce{read: func(context.Context) (webhook.Secret, error) {
		reads++
		if reads == 1 {
			return webhook.Secret{}, errors.New("throttled")
		}
		return webhook.ParseSecret("whsec_C2FtcGxlLXNpZ25pbmcta2V5LWZvci10ZXN0cw==")
	}}
	if reads != 0 {
		t.Fatal("the secret was read before the first delivery")
	}
	if err := s.load(t.Context()); err == nil {
		t.Fatal("a failed read was not reported")
	}
	for range 3 {
		if err := s.load(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 2 || s.sender == nil {
		t.Errorf("read %d times, sender %v; want a retry after the failure, then the kept secret", reads, s.sender)
	}
}
