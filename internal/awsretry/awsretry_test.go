package awsretry

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"
)

func TestRetryerHasFleetrunsLimits(t *testing.T) {
	t.Parallel()
	r := New(Options{})
	if r.MaxAttempts() != DefaultMaxAttempts {
		t.Errorf("MaxAttempts = %d, want %d", r.MaxAttempts(), DefaultMaxAttempts)
	}
	throttled := &smithy.GenericAPIError{Code: "ProvisionedThroughputExceededException"}
	if !r.IsErrorRetryable(throttled) || r.IsErrorRetryable(errors.New("a bug")) {
		t.Error("the retryer retries the wrong errors")
	}
	for attempt := 1; attempt < 20; attempt++ {
		d, err := r.RetryDelay(attempt, throttled)
		if err != nil || d < 0 || d > DefaultMaxDelay {
			t.Errorf("RetryDelay(%d) = %v, %v; want at most %v", attempt, d, err, DefaultMaxDelay)
		}
	}
	// No retry quota: a long burst of throttles never runs out of tokens.
	v2 := r.(aws.RetryerV2)
	for range 1000 {
		release, err := r.GetRetryToken(context.Background(), throttled)
		if err != nil {
			t.Fatalf("GetRetryToken = %v: the retryer has a quota", err)
		}
		_ = release(nil)
	}
	if _, err := v2.GetAttemptToken(context.Background()); err != nil {
		t.Errorf("GetAttemptToken = %v", err)
	}
}
