package awsretry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
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

func TestLoadOptionInstallsTheRetryer(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		LoadOption(Options{MaxAttempts: 3, MaxDelay: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Retryer == nil || cfg.Retryer().MaxAttempts() != 3 {
		t.Errorf("the configuration's retryer is not the one asked for")
	}
}
