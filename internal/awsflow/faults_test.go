package awsflow

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// throughputExceeded is DynamoDB refusing a request over a table's capacity.
func throughputExceeded() error {
	return &types.ProvisionedThroughputExceededException{Message: aws.String("injected")}
}

// throttling is DynamoDB refusing a request over the account's request rate.
func throttling() error {
	return &smithy.GenericAPIError{Code: "ThrottlingException", Message: "injected"}
}

// faults fails the next calls of chosen DynamoDB operations of the app's client. An injected
// failure takes the place of one attempt inside the SDK's retry loop, as internal/dynamo's
// fault tests do: the retryer production uses (awsretry) tries again, and a failure that
// outlasts its attempts reaches the store and then the executor, whose message SQS delivers
// again. Injected failures never reach moto, so the counter does not see them.
type faults struct {
	mu      sync.Mutex
	pending map[string][]func() error
	hits    map[string]int
}

// throttle makes the next n calls of DynamoDB operation op fail with err().
func (f *faults) throttle(op string, n int, err func() error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		f.pending = map[string][]func() error{}
	}
	for range n {
		f.pending[op] = append(f.pending[op], err)
	}
}

// take returns the failure for the next call of op, or nil.
func (f *faults) take(op string) func() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.pending[op]
	if len(q) == 0 {
		return nil
	}
	f.pending[op] = q[1:]
	if f.hits == nil {
		f.hits = map[string]int{}
	}
	f.hits[op]++
	return q[0]
}

// left returns how many injected failures have not been used yet.
func (f *faults) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, q := range f.pending {
		n += len(q)
	}
	return n
}

// hit returns how many calls of op were failed.
func (f *faults) hit(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[op]
}

func (f *faults) register(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("awsflow.faults",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if middleware.GetServiceID(ctx) == "DynamoDB" {
				if fail := f.take(middleware.GetOperationName(ctx)); fail != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, fail()
				}
			}
			return next.HandleFinalize(ctx, in)
		}), "Retry", middleware.After)
}
