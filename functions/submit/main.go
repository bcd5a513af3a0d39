// Command submit is SubmitFunction, POST /tasks behind API Gateway: it validates a submission, stores the pending task and queues its dispatch.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration from the environment Lambda provides (which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, the handler that
// package awsapp builds, and the services it calls besides DynamoDB, and only those, so that
// it links no other SDK client: SQS, SSM and EC2 (targets). Build it with -tags lambda.norpc for the
// provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withinventory"
	"github.com/fleetrun/fleetrun/internal/awsapp/withsqs"
)

func main() {
	awsapp.Start("submit", func(a *awsapp.App) any { return a.HTTP() },
		[]awsapp.Service{withsqs.Queues, withinventory.Inventory},
		awsapp.EnvTableName, awsapp.EnvQueueURL, awsapp.EnvAllowedScriptBuckets)
}
