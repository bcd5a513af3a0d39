// Command status is StatusFunction, every GET route of the API behind API Gateway: tasks, results, devices and long-polls.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration from the environment Lambda provides (which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, the handler that
// package awsapp builds, and the services it calls besides DynamoDB, and only those, so that
// it links no other SDK client: S3 (full output), CloudWatch Logs (followed output),
// SSM and EC2 (the managed nodes). Build it with -tags lambda.norpc for the
// provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withinventory"
	"github.com/fleetrun/fleetrun/internal/awsapp/withlogs"
	"github.com/fleetrun/fleetrun/internal/awsapp/withs3"
)

func main() {
	awsapp.Start("status", func(a *awsapp.App) any { return a.HTTP() },
		[]awsapp.Service{withs3.Output, withlogs.Follow, withinventory.Inventory},
		awsapp.EnvTableName)
}
