package ssmrun

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go/middleware"
)

// ThrottleObserver is told about every SSM request that SSM throttled.
type ThrottleObserver interface {
	// SSMThrottled is called once per throttled attempt of operation (SendCommand,
	// ListCommandInvocations, …). It must be quick and safe for concurrent use.
	SSMThrottled(ctx context.Context, operation string)
}

// ObserveThrottles returns an option for the SSM client that tells obs about each attempt SSM
// refuses with throttling, the ones the SDK's retryer then retries included: those retries are
// invisible to the runner, yet they are what slows a dispatch down and what SSM's request
// quotas are about.
func ObserveThrottles(obs ThrottleObserver) func(*ssm.Options) {
	return func(o *ssm.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			// The deserialize step runs once per attempt, inside the retry loop of the finalize
			// step; placed first in it, this sees each attempt's error as the SDK decoded it.
			return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("fleetrunObserveThrottles",
				func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
					middleware.DeserializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleDeserialize(ctx, in)
					if err != nil && throttled(err) {
						obs.SSMThrottled(ctx, middleware.GetOperationName(ctx))
					}
					return out, md, err
				}), middleware.Before)
		})
	}
}
