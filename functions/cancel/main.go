// Command cancel is CancelFunction, DELETE /tasks/{id} behind API Gateway: it cancels a task at once or asks the executor to stop its devices.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration from the environment Lambda provides (which
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, the handler that
// package awsapp builds, and the services it calls besides DynamoDB, and only those, so that
// it links no other SDK client: EventBridge, SQS. Build it with -tags lambda.norpc for the
// provided.al2023 runtime.
package main

import (
	"github.com/fleetrun/fleetrun/internal/awsapp"
	"github.com/fleetrun/fleetrun/internal/awsapp/withevents"
	"github.com/fleetrun/fleetrun/internal/awsapp/withsqs"
)

func main() {
	awsapp.Start("cancel", func(a *awsapp.App) any { return a.HTTP() },
		[]awsapp.Service{withsqs.Queues, withevents.Publisher},
		awsapp.EnvTableName, awsapp.EnvQueueURL)
}
