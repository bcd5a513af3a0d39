// Package awsretry configures the AWS SDK's retryer once, for every client fleetrun makes:
// DynamoDB, SQS, SSM and EventBridge. Code calls the SDK once per request and leaves throttling
// and transient failures to this retryer; it only decides what a call that still failed means.
// The loops the SDK cannot do stay where they are: the DynamoDB store re-plans a transaction
// that lost a race, and the HTTP client package backs off between API calls.
package awsretry

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
)

// fleetrun's limits.
const (
	// DefaultMaxAttempts bounds the tries of one call, the first included. A burst of device
	// updates to one task can be throttled several times in a row; eight tries with the delays
	// below ride out about ten seconds of it.
	DefaultMaxAttempts = 8
	// DefaultBaseDelay is the first delay between tries; it doubles on each try, with full
	// jitter, up to DefaultMaxDelay.
	DefaultBaseDelay = 25 * time.Millisecond
	// DefaultMaxDelay caps the delay between two tries.
	DefaultMaxDelay = 2 * time.Second
)

// Options tune the retryer. The zero value is fleetrun's production configuration; tests
// shorten the delays.
type Options struct {
	// MaxAttempts is DefaultMaxAttempts when zero.
	MaxAttempts int
	// BaseDelay is DefaultBaseDelay when zero.
	BaseDelay time.Duration
	// MaxDelay is DefaultMaxDelay when zero.
	MaxDelay time.Duration
}

// New returns the SDK's standard retryer with fleetrun's limits and no client-side retry
// quota: the SDK's shared quota is spent by a burst of throttles to one table, after which
// calls that would succeed a moment later fail at once.
func New(o Options) aws.Retryer {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = DefaultBaseDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = o.MaxAttempts
		so.BaseDelay = o.BaseDelay
		so.MaxBackoff = o.MaxDelay
		so.RateLimiter = ratelimit.None
	})
}

// LoadOption installs New(o) as the retryer of every client made from a configuration:
// config.LoadDefaultConfig(ctx, awsretry.LoadOption(awsretry.Options{})).
func LoadOption(o Options) config.LoadOptionsFunc {
	return config.WithRetryer(func() aws.Retryer { return New(o) })
}

// LoadConfig loads the SDK's default configuration with New(o) as every client's retryer and
// the loaded HTTP client wrapped in BufferBodies. It is how fleetrun makes its configuration,
// in the functions and in tests alike.
func LoadConfig(ctx context.Context, o Options) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, LoadOption(o))
	if err != nil {
		return aws.Config{}, err
	}
	cfg.HTTPClient = BufferBodies(cfg.HTTPClient)
	return cfg, nil
}
