// Package withs3 wires S3 into OutputFunction's App: the devices' full output, served from
// OUTPUT_BUCKET where the SSM agent wrote it.
package withs3

import (
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/s3output"
	"github.com/fleetrun/fleetrun/internal/ssmcmd"
)

// Output is the S3 service of awsapp; without an OUTPUT_BUCKET it wires nothing.
func Output(a *awsapp.App) {
	if a.Config.OutputBucket == "" {
		return
	}
	client := s3.NewFromConfig(a.SDK)
	a.Parts.Output = s3output.New(client, s3.NewPresignClient(client), a.Config.OutputBucket,
		s3output.Options{Key: ssmcmd.OutputKey("")})
}
