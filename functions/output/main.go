// Command output is OutputFunction, GET /tasks/{id}/devices/{deviceId}/output behind API Gateway: a device's full output, whole or followed as it is written.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration from the environment Lambda provides (which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, the handler that
// package awsapp builds, and the services it calls besides DynamoDB, and only those, so that
// it links no other SDK client: S3 (full output) and CloudWatch Logs (followed output). Build
// it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withlogs"
	"github.com/fleetrun/fleetrun/internal/awsapp/withs3"
)

func main() {
	awsapp.Start("output", func(a *awsapp.App) any { return a.HTTP() },
		[]awsapp.Service{withs3.Output, withlogs.Follow},
		awsapp.EnvTableName)
}
