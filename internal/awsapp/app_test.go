package awsapp

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/fleetrun/fleetrun/internal/engine"
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
