// Command status is StatusFunction, the GET routes of the API behind API Gateway that read the table alone: tasks, results, devices, deliveries, long-polls and event streams.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration from the environment Lambda provides (which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, and the handler
// that package awsapp builds. It calls no service besides DynamoDB, so it links no other SDK
// client and none of their initialisation runs at its cold start: a device's full output is
// OutputFunction's (S3, CloudWatch Logs) and the managed nodes are InventoryFunction's (SSM,
// EC2). Build it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
)

func main() {
	awsapp.Start("status", func(a *awsapp.App) any { return a.HTTP() }, nil, awsapp.EnvTableName)
}
