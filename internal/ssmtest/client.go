package ssmtest

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// Client returns a real SSM client for the server: dummy credentials, the server as
// BaseEndpoint, and the SDK's standard retryer with a 1 ms backoff and no retry quota, so that
// injected throttling is retried as in production without slowing tests down. optFns adjust
// the options further.
func (s *Server) Client(optFns ...func(*ssm.Options)) *ssm.Client {
	return ssm.New(ssm.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("ssmtest", "ssmtest", ""),
		HTTPClient:   s.HTTPClient(),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			o.RateLimiter = ratelimit.None
		}),
	}, optFns...)
}
