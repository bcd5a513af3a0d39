package ssmtest

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/fleetrun/fleetrun/internal/awsretry"
)

// Client returns a real SSM client for the server: dummy credentials, the server as
// BaseEndpoint, and production's retryer (awsretry) with 1 ms delays, so that injected
// throttling is retried as in production without slowing tests down. optFns adjust the options
// further.
func (s *Server) Client(optFns ...func(*ssm.Options)) *ssm.Client {
	return ssm.New(ssm.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("ssmtest", "ssmtest", ""),
		HTTPClient:   awsretry.BufferBodies(s.HTTPClient()),
		Retryer:      awsretry.New(awsretry.Options{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
	}, optFns...)
}
