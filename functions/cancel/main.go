// Command cancel is CancelFunction, DELETE /tasks/{id} behind API Gateway: it cancels a task at once or asks the executor to stop its devices.
//
// It only wires, through awsapp.Start: configuration from the environment (the variables it
// names are required), the SDK configuration (which honours AWS_ENDPOINT_URL and
// AWS_ENDPOINT_URL_<SERVICE>), a JSON logger, and the handler that package awsapp builds. Build
// it with -tags lambda.norpc for the provided.al2023 runtime.
package main

import "github.com/fleetrun/fleetrun/internal/awsapp"

func main() {
	awsapp.Start("cancel", func(a *awsapp.App) any { return a.HTTP() }, awsapp.EnvTableName, awsapp.EnvQueueURL)
}
